"""Model sources on Civitai: :class:`CivitaiResolver` asks Civitai's public
``/api/v1/model-versions/by-hash/{sha256}`` (or a stand-in at ``COMFYPACK_CIVITAI_URL``).
"""

from __future__ import annotations

import logging

import httpx

from ..lockfile import ModelSource
from .sources import CIVITAI_URL, ModelFile, _Unavailable, classify_url

__all__ = ["CivitaiResolver"]

logger = logging.getLogger(__name__)


class CivitaiResolver:
    """``GET {base_url}/api/v1/model-versions/by-hash/{sha256}`` (public, no search)."""

    name = "civitai"

    def __init__(
        self, base_url: str = CIVITAI_URL, token: str | None = None, *, timeout: float = 20.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @property
    def cache_key(self) -> str:
        return f"civitai {self.base_url}"

    def resolve(self, model: ModelFile) -> list[ModelSource]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        url = f"{self.base_url}/api/v1/model-versions/by-hash/{model.sha256}"
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
                r = client.get(url, headers=headers)
        except httpx.HTTPError as e:
            raise _Unavailable(f"{url}: {type(e).__name__}: {e}") from e
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise _Unavailable(f"{url}: HTTP {r.status_code}")
        try:
            data = r.json()
        except ValueError as e:
            raise _Unavailable(f"{url}: not JSON") from e
        if not isinstance(data, dict):
            return []
        version_id = data.get("id") if isinstance(data.get("id"), int) else None
        files = [f for f in data.get("files") or [] if isinstance(f, dict)]
        match = [
            f
            for f in files
            if str((f.get("hashes") or {}).get("SHA256", "")).lower() == model.sha256
        ]
        download_url = (match[0] if match else {}).get("downloadUrl") or data.get("downloadUrl")
        if not isinstance(download_url, str):
            return []
        try:
            found = classify_url(download_url, civitai_url=self.base_url)
            if found.type == "civitai":  # its canonical civitai.com URL, whatever answered
                return [
                    found.model_copy(
                        update={"model_version_id": version_id or found.model_version_id}
                    )
                ]
            return [ModelSource(type="civitai", url=download_url, model_version_id=version_id)]
        except ValueError:
            logger.debug("Civitai gave an unusable download URL %r", download_url)
            return []
