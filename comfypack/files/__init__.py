"""Bytes on disk and over the wire, for every stage above: sha256 of big files (parallel, cached
by stat), verified and resumable downloads, the URL policy (public addresses only) and S3 clients.

- ``hashing``: :func:`sha256_file`, :class:`HashCache`, :func:`hash_files` with progress bars.
- ``download``: :func:`download.download` fetches a locked file from its source (URL, Hugging
  Face, Civitai, ``s3://``), verified by size and sha256 before it reaches its path (not
  re-exported: the name is the module's).
- ``urlfetch``: fetch a URL input safely — public addresses only, pinned, bounded (:class:`UrlPolicy`).
- ``s3``: a boto3 S3 client (the ``s3`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .download import hf_file_url, source_url
    from .hashing import HashCache, default_hash_cache, hash_files, sha256_file
    from .s3 import s3_client
    from .urlfetch import UrlPolicy, check_url, fetch_url

_EXPORTS = {
    "HashCache": ".hashing",
    "UrlPolicy": ".urlfetch",
    "check_url": ".urlfetch",
    "default_hash_cache": ".hashing",
    "fetch_url": ".urlfetch",
    "hash_files": ".hashing",
    "hf_file_url": ".download",
    "s3_client": ".s3",
    "sha256_file": ".hashing",
    "source_url": ".download",
}

__all__ = [
    "HashCache",
    "UrlPolicy",
    "check_url",
    "default_hash_cache",
    "fetch_url",
    "hash_files",
    "hf_file_url",
    "s3_client",
    "sha256_file",
    "source_url",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
