"""Packaging and transforming the deployment artifacts the way a user's deploy does, for the tests.

`chalice package` output is a SAM template; CloudFormation runs it through the SAM transform, which
is the `aws-sam-translator` library. The tests run that library offline, so they check the template
CloudFormation would really create."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform

from trickle_deploy import template as merge
from trickle_local.stage import PROJECT_DIR

BIN = Path(sys.executable).parent


def package_stage(stage: str, out: Path) -> Path:
    """The stage's packaged SAM template: with the merge template for a template stage (prod),
    plain `chalice package` for the others (what `chalice deploy` would create)."""
    if stage == "prod":
        return merge.package(stage, out)
    subprocess.run(
        [str(BIN / "chalice"), "package", "--stage", stage, str(out / "pkg")],
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": str(BIN)},
    )
    return out / "pkg" / "sam.json"


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


def write(template: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(template, indent=2))
    return path
