"""The SAM transform CloudFormation applies to `chalice package` output, run offline.

`chalice package` writes a SAM template; CloudFormation runs it through the SAM transform, which is
the `aws-sam-translator` library (a development dependency). Running it here gives the template
CloudFormation would really create: the suite lints it and creates it on the emulator's
CloudFormation, and so does `python -m trickle_prove`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import WaiterError
from samtranslator.translator.transform import transform

from trickle_deploy.emulator_shims import for_cloudformation


class NoManagedPolicies:
    """Trickle's roles are explicit; the translator must never need to look up a managed policy."""

    def load(self) -> dict[str, str]:
        raise AssertionError("the SAM transform looked up managed policies")


def sam_transform(sam: dict[str, Any], code_uri: str = "s3://artifacts/deployment.zip") -> dict[str, Any]:
    """What CloudFormation's SAM transform makes of the template after `aws cloudformation package`
    (which uploads the code and rewrites `CodeUri` to its S3 location). The translator needs a region
    for its pseudo-parameter values; the caller's environment provides one."""
    uploaded = copy.deepcopy(sam)
    for resource in uploaded["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = code_uri
    return dict(transform(uploaded, {}, NoManagedPolicies()))


def create_stack(
    client: Callable[[str], Any],
    sam: dict[str, Any],
    code: Path,
    stack: str,
    emulator: str,
    bucket: str = "artifacts",
    parameters: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """Way A on an emulator: the upload `aws cloudformation package` does, the SAM transform, then
    the stack created from the copy the emulator's CloudFormation takes (`for_cloudformation`) and
    waited for. The template goes by S3, as `aws cloudformation deploy --s3-bucket` hands it over:
    over 51,200 bytes (three destinations make it so) CloudFormation takes no template inline.
    Returns the transformed template, as CloudFormation on AWS would create it."""
    s3 = client("s3")
    region = s3.meta.region_name
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **where)
    s3.upload_file(str(code), bucket, code.name)
    transformed = sam_transform(sam, f"s3://{bucket}/{code.name}")
    template = f"{stack}.template.json"
    s3.put_object(Bucket=bucket, Key=template, Body=json.dumps(for_cloudformation(transformed, emulator)))
    cloudformation = client("cloudformation")
    cloudformation.create_stack(
        StackName=stack,
        TemplateURL=f"https://s3.amazonaws.com/{bucket}/{template}",  # path style: either emulator reads it
        Capabilities=["CAPABILITY_IAM"],
        Parameters=list(parameters),
    )
    try:
        cloudformation.get_waiter("stack_create_complete").wait(
            StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
    except WaiterError as exc:
        events = cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
        failed = [
            f"{e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason', '')}"
            for e in events
            if e["ResourceStatus"] == "CREATE_FAILED"
        ]
        raise RuntimeError(f"stack {stack} not created: {'; '.join(failed) or exc}") from None
    return transformed
