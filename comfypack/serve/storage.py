"""Object storage for file outputs: upload to an S3-compatible bucket, answer with signed URLs.

With a bucket set (``COMFYPACK_S3_BUCKET``), every file a run produces is uploaded to
``s3://<bucket>/<prefix><job id>/<output name>/<file name>`` and the answer carries a presigned
``GET`` URL (valid for ``expires`` seconds) in place of the ``data:`` URI. ``<prefix>`` is the
service's (``COMFYPACK_S3_PREFIX``) followed by the request's own, if it sends one
(``X-ComfyPack-Output-Prefix``). The answer form is chosen per request where both are enabled
(``COMFYPACK_OUTPUTS=url,inline``; the first is the default; a request picks with
``X-ComfyPack-Outputs: url|inline``). The run's files are already gone from ComfyUI's output
folder when the upload starts (the runner reads them, then removes them); nothing is kept on
the service's disk.

Endpoint (R2, MinIO, GCS's XML API …: ``COMFYPACK_S3_ENDPOINT``, else boto3's own
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``), region and credentials come from boto3's usual
chain (environment, ``~/.aws/config`` and ``credentials``, instance roles); comfypack never
reads or logs a key. boto3 is the ``s3`` extra: ``pip install 'comfypack[s3]'``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ComfyPackError, RequestError, ServiceError
from ..files.s3 import s3_client

if TYPE_CHECKING:
    from ..comfyui.runner import RunOutput

__all__ = [
    "StorageSettings",
    "OutputStore",
    "OUTPUTS_HEADER",
    "PREFIX_HEADER",
    "MODES",
    "choose_mode",
    "job_prefix",
]

logger = logging.getLogger(__name__)

OUTPUTS_HEADER = "X-ComfyPack-Outputs"
PREFIX_HEADER = "X-ComfyPack-Output-Prefix"
MODES = ("inline", "url")
_PREFIX_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,7}/?$"
)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StorageSettings:
    """Where outputs go (``bucket``; no bucket: inline only) and how they are answered.

    ``modes``: the answer forms allowed, the first the default (``("url",)``, ``("url",
    "inline")``, ``("inline", "url")`` or ``("inline",)``); ``expires``: seconds a signed URL is
    valid; ``addressing``: ``auto``, ``path`` (most self-hosted servers) or ``virtual``.
    """

    bucket: str | None = None
    endpoint_url: str | None = None
    prefix: str = ""
    region: str | None = None
    expires: int = 3600
    modes: tuple[str, ...] = ("inline",)
    addressing: str = "auto"

    def __post_init__(self) -> None:
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ComfyPackError(
                f"COMFYPACK_OUTPUTS: {','.join(self.modes)!r}: list inline and/or url"
            )
        if "url" in self.modes and not self.bucket:
            raise ComfyPackError(
                "URL answers need a bucket: set COMFYPACK_S3_BUCKET (or leave "
                "COMFYPACK_OUTPUTS=inline)"
            )
        if not 1 <= self.expires <= 7 * 24 * 3600:
            raise ComfyPackError("COMFYPACK_S3_URL_EXPIRES: between 1 s and 7 days (SigV4's limit)")
        if self.prefix and not _PREFIX_RE.match(self.prefix):
            raise ComfyPackError(
                f"COMFYPACK_S3_PREFIX={self.prefix!r}: letters, digits, '._-' "
                "segments separated by '/'"
            )
        if self.addressing not in ("auto", "path", "virtual"):
            raise ComfyPackError("COMFYPACK_S3_ADDRESSING: auto, path or virtual")

    @property
    def enabled(self) -> bool:
        return "url" in self.modes

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageSettings:
        """``COMFYPACK_S3_BUCKET``, ``COMFYPACK_S3_ENDPOINT``, ``COMFYPACK_S3_PREFIX``,
        ``COMFYPACK_S3_REGION``, ``COMFYPACK_S3_URL_EXPIRES`` (s, 3600), ``COMFYPACK_S3_ADDRESSING``,
        ``COMFYPACK_OUTPUTS`` (default: ``url`` with a bucket, else ``inline``)."""
        env = os.environ if env is None else env
        bucket = env.get("COMFYPACK_S3_BUCKET") or None
        modes_text = env.get("COMFYPACK_OUTPUTS") or ("url" if bucket else "inline")
        expires = env.get("COMFYPACK_S3_URL_EXPIRES") or "3600"
        if not expires.isdigit():
            raise ComfyPackError(f"COMFYPACK_S3_URL_EXPIRES={expires!r}: whole seconds")
        return cls(
            bucket=bucket,
            endpoint_url=env.get("COMFYPACK_S3_ENDPOINT") or None,
            prefix=env.get("COMFYPACK_S3_PREFIX", "").strip(),
            region=env.get("COMFYPACK_S3_REGION") or None,
            expires=int(expires),
            modes=tuple(m.strip().lower() for m in modes_text.split(",") if m.strip()),
            addressing=(env.get("COMFYPACK_S3_ADDRESSING") or "auto").lower(),
        )


def choose_mode(asked: str | None, settings: StorageSettings) -> str:
    """The answer form for a request that sent ``X-ComfyPack-Outputs: asked`` (or nothing)."""
    if asked is None:
        return settings.modes[0]
    mode = asked.strip().lower()
    if mode not in settings.modes:
        raise RequestError.for_field(
            "outputs",
            f"{asked!r} is not an answer form this service offers (it offers: "
            f"{', '.join(settings.modes)})",
            status=422,
        )
    return mode


def job_prefix(asked: str | None) -> str:
    """A request's own key prefix (``X-ComfyPack-Output-Prefix``), checked."""
    if asked is None:
        return ""
    text = asked.strip()
    if not _PREFIX_RE.match(text):  # every segment starts with a letter or digit: no "." / ".."
        raise RequestError.for_field(
            "output_prefix",
            "letters, digits and '._-', in at most 8 segments separated by '/'",
            status=422,
        )
    return text.rstrip("/") + "/"


class OutputStore:
    """Uploads a run's files to one bucket and signs URLs for them (the client is swappable)."""

    def __init__(self, settings: StorageSettings, client: Any = None) -> None:
        if not settings.bucket:
            raise ComfyPackError("no bucket: set COMFYPACK_S3_BUCKET")
        self.settings = settings
        self.bucket: str = settings.bucket
        self.client = (
            client
            if client is not None
            else s3_client(settings.endpoint_url, settings.region, settings.addressing)
        )

    def key(self, job_id: str, output: str, filename: str, prefix: str = "") -> str:
        base = self.settings.prefix.rstrip("/") + "/" if self.settings.prefix else ""
        safe = _SAFE_NAME.sub("_", filename).strip("._") or "file"
        return f"{base}{prefix}{_SAFE_NAME.sub('_', job_id)}/{output}/{safe}"

    def check(self) -> None:
        """The bucket exists and these credentials reach it (service start-up)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:  # botocore's ClientError / EndpointConnectionError / NoCredentials
            raise ServiceError(
                f"the output bucket {self.bucket!r} is not reachable with boto3's "
                f"credentials: {_describe(e)}"
            ) from e

    def put(self, data: bytes, key: str, media_type: str) -> str:
        """Upload ``data`` to ``key``; returns a presigned GET URL for it."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=media_type)
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.settings.expires,
            )
        except Exception as e:  # botocore raises many kinds; all mean "not stored"
            raise ServiceError(
                f"uploading an output to s3://{self.bucket}/{key} failed: {_describe(e)}"
            ) from e
        return url

    async def store(self, result: RunOutput, job_id: str, prefix: str = "") -> dict[str, list[str]]:
        """Upload every file of ``result`` (in parallel); ``{output name: [signed URL, …]}``."""
        from ..comfyui.runner import OutputFile

        jobs: list[tuple[str, int, OutputFile]] = [
            (name, i, v)
            for name, values in result.outputs.items()
            for i, v in enumerate(values)
            if isinstance(v, OutputFile)
        ]
        urls: dict[str, list[str]] = {}

        async def one(name: str, i: int, f: OutputFile) -> tuple[str, int, str]:
            key = self.key(job_id, name, f.filename if i == 0 else f"{i}-{f.filename}", prefix)
            return name, i, await asyncio.to_thread(self.put, f.data, key, f.media_type)

        for name, i, url in sorted(await asyncio.gather(*(one(*j) for j in jobs))):
            urls.setdefault(name, []).append(url)
            assert len(urls[name]) == i + 1
        logger.info("stored %d output file(s) of job %s in s3://%s", len(jobs), job_id, self.bucket)
        return urls


def _describe(e: BaseException) -> str:
    """A botocore error without request signatures or keys: its code and message."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        err = response.get("Error") or {}
        return f"{err.get('Code', type(e).__name__)}: {err.get('Message', '')}".strip(": ")
    return type(e).__name__ + (f": {e}" if "Signature" not in str(e) else "")
