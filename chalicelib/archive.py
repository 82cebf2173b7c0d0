"""The API's responses, kept in S3 for operators (`GET /messages/{id}` hands out a presigned URL);
the bucket's lifecycle rule expires them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chalicelib.model import iso_utc

PREFIX = "responses/"


class ResponseArchive:
    def __init__(self, s3: Any, bucket: str) -> None:
        """`s3`: Any, as no stubs for s3 are installed (requirements-dev.txt)."""
        self._s3 = s3
        self.bucket = bucket

    def key(self, message_id: str) -> str:
        return f"{PREFIX}{message_id}.json"

    def store(self, message_id: str, status: int | None, body: str) -> None:
        document = {
            "message_id": message_id,
            "status": status,
            "body": body,
            "stored_at": iso_utc(datetime.now(UTC)),
        }
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self.key(message_id),
            Body=json.dumps(document).encode(),
            ContentType="application/json",
        )

    def url(self, message_id: str, expires_s: int = 900) -> str:
        return str(
            self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.key(message_id)}, ExpiresIn=expires_s
            )
        )
