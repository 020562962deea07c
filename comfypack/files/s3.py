"""An S3 client for every bucket comfypack reads or writes: ``s3://`` model sources
(:mod:`comfypack.files.download`) and the output bucket (:mod:`comfypack.serve.storage`).

Credentials, region and endpoint come from boto3's usual chain; boto3 is the ``s3`` extra
(``pip install 'comfypack[s3]'``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ComfyPackError

__all__ = ["s3_client"]


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as e:
        raise ComfyPackError("object storage needs boto3: pip install 'comfypack[s3]'") from e
    return boto3


def s3_client(
    endpoint_url: str | None = None, region: str | None = None, addressing: str = "auto"
) -> Any:
    """A boto3 S3 client: credentials from boto3's chain, SigV4 (what presigned URLs need)."""
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": addressing},
        retries={"max_attempts": 5, "mode": "standard"},
    )
    return (
        _boto3()
        .session.Session()
        .client("s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config)
    )
