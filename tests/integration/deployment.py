"""Packaging the deployment artifacts the way a user's deploy does, for the tests (the SAM transform
CloudFormation applies to them is `trickle_deploy.sam.sam_transform`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from trickle_deploy import template as merge
from trickle_project.stage import PROJECT_DIR

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


def write(template: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(template, indent=2))
    return path
