"""The AWS session a deploy command works in: a region and credentials, or a message saying what to
set, before any call fails with a botocore traceback."""

from __future__ import annotations

import os

import boto3
from botocore.exceptions import ProfileNotFound

from trickle_project.aws import LOCAL_CREDENTIALS

LOCAL_REGION = "us-east-1"  # the emulators' (trickle_local.emulators.REGION)

NO_REGION = (
    "no AWS region: give --region, or set AWS_REGION (or AWS_DEFAULT_REGION),"
    " or name one in your AWS profile (aws configure)"
)
NO_CREDENTIALS = (
    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,"
    " or AWS_PROFILE to a configured profile (aws configure, aws sso login)"
)


def configured_session(region: str | None) -> boto3.Session:
    """A session with a region and credentials; SystemExit naming every one that is missing."""
    session = _session(region_name=region)
    missing = [
        message
        for message, found in ((NO_REGION, session.region_name), (NO_CREDENTIALS, session.get_credentials()))
        if not found
    ]
    if missing:
        raise SystemExit("\n".join(missing))
    return session


def local_session(region: str | None) -> boto3.Session:
    """A session for a local endpoint, as `./dev run` has: the emulator's test credentials (never the
    user's, which could sign for a real account) and us-east-1 unless a region is given or set."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=region or LOCAL_REGION,
    )


def _session(**options: str | None) -> boto3.Session:
    try:
        return boto3.Session(**options)  # type: ignore[arg-type]
    except ProfileNotFound as exc:
        raise SystemExit(f"{exc}: set AWS_PROFILE to a profile of your AWS configuration") from None
