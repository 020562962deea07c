"""Bytes on disk and over the wire, for every stage above: sha256 of big files (parallel, cached
by stat), verified and resumable downloads, the URL policy (public addresses only) and S3 clients.

- ``hashing``: :func:`sha256_file`, :class:`HashCache`, :func:`hash_files` with progress bars.
- ``download``: :func:`download.download` fetches a locked file from its source (URL, Hugging
  Face, Civitai, ``s3://``), verified by size and sha256 before it reaches its path (not
  re-exported: the name is the module's).
- ``urlfetch``: fetch a URL input safely — public addresses only, pinned, bounded (:class:`UrlPolicy`).
- ``s3``: a boto3 S3 client (the ``s3`` extra).
"""

from .download import hf_file_url, source_url
from .hashing import HashCache, default_hash_cache, hash_files, sha256_file
from .s3 import s3_client
from .urlfetch import UrlPolicy, check_url, fetch_url

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
