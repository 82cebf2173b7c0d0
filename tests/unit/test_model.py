"""The values' one helper: every time Trickle writes is `model.iso_utc`'s ISO 8601, in one place."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chalicelib.model import iso_utc

PACKAGE = Path(__file__).resolve().parents[2] / "chalicelib"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (1_767_225_600.25, "2026-01-01T00:00:00.250Z"),
        (1_767_225_600.2509, "2026-01-01T00:00:00.250Z"),  # cut to the millisecond, never rounded up
        (0, "1970-01-01T00:00:00.000Z"),
        (datetime(2026, 1, 1, 12, 30, tzinfo=UTC), "2026-01-01T12:30:00.000Z"),
        (datetime(2026, 1, 1, 12, 30, 0, 999_999, tzinfo=UTC), "2026-01-01T12:30:00.999Z"),
    ],
)
def test_iso_utc(moment: float | datetime, text: str) -> None:
    assert iso_utc(moment) == text


def test_times_are_formatted_in_one_place() -> None:
    """A second formatter would drift (a missing `Z`, seconds instead of milliseconds)."""
    formatting = [
        f"{path.name}:{node.lineno}"
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != "model.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in ("isoformat", "strftime")
    ]
    assert formatting == []
