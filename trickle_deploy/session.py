"""The AWS session a deploy command works in: a region and credentials, or a message saying what to
set, before any call fails with a botocore traceback."""

from __future__ import annotations

import boto3
from botocore.exceptions import ProfileNotFound

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
    try:
        session = boto3.Session(region_name=region)
    except ProfileNotFound as exc:
        raise SystemExit(f"{exc}: set AWS_PROFILE to a profile of your AWS configuration") from None
    missing = [
        message
        for message, found in ((NO_REGION, session.region_name), (NO_CREDENTIALS, session.get_credentials()))
        if not found
    ]
    if missing:
        raise SystemExit("\n".join(missing))
    return session
