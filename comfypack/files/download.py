"""Fetch a file from its source, verified by size and sha256: the download engine.

:func:`download` writes into ``DEST.partial`` under an exclusive lock (two processes never write
the same download), resumes an interrupted transfer with ``Range`` (also in a later run), checks
size and sha256, and only then renames the file into place: a bad file never reaches its final
path. :func:`source_url` is where a :class:`~comfypack.lockfile.ModelSource` is fetched from:
its canonical URL, or the same file on a mirror (``HF_ENDPOINT``, a Civitai stand-in).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from ..errors import RestoreError
from ..lockfile import ModelSource
from .hashing import progress_bar, sha256_file

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["source_url", "download", "hf_file_url", "HF_CANONICAL", "s3_presigned_url"]

logger = logging.getLogger(__name__)

#: the Hugging Face Hub's own address: what locks record, whatever endpoint was used
HF_CANONICAL = "https://huggingface.co"


def hf_file_url(repo: str, file: str, revision: str, endpoint: str | None = None) -> str:
    """``{endpoint}/{repo}/resolve/{revision}/{file}`` (endpoint default: the canonical Hub)."""
    base = (endpoint or HF_CANONICAL).rstrip("/")
    return f"{base}/{repo}/resolve/{quote(revision, safe='')}/{quote(file)}"


def _rebase(url: str, base: str) -> str:
    b = urlsplit(base.rstrip("/"))
    u = urlsplit(url)
    return urlunsplit((b.scheme, b.netloc, b.path + u.path, u.query, u.fragment))


def source_url(
    source: ModelSource, *, hf_endpoint: str | None = None, civitai_url: str | None = None
) -> str:
    """The URL to fetch ``source`` from; ``hf_endpoint`` / ``civitai_url`` redirect Hugging Face
    and Civitai sources to a mirror (or a local stand-in)."""
    if (
        source.type == "huggingface"
        and hf_endpoint
        and source.repo
        and source.revision
        and source.file
    ):
        return hf_file_url(source.repo, source.file, source.revision, hf_endpoint)
    if source.type == "civitai" and civitai_url:
        return _rebase(source.url, civitai_url)
    return source.url


def s3_presigned_url(url: str, expires: int = 6 * 3600) -> str:
    """A presigned GET URL for ``s3://bucket/key``: boto3's credentials, region and endpoint
    (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for R2, MinIO …). The URL is a credential:
    callers show ``url``, never this."""
    from .s3 import s3_client

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if parts.scheme != "s3" or not bucket or not key:
        raise RestoreError(f"{url!r} is not an s3://bucket/key URL")
    client = s3_client()  # no boto3: a ComfyPackError naming the extra to install
    try:
        signed: str = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
        )
    except Exception as e:  # botocore's NoCredentialsError, NoRegionError …: all "cannot sign"
        raise RestoreError(
            f"cannot sign a download of {url}: {type(e).__name__} (boto3 reads "
            "credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws or an "
            "instance role; the endpoint from AWS_ENDPOINT_URL_S3)"
        ) from e
    return signed


class _Interrupted(Exception):
    pass


@contextlib.contextmanager
def _locked_partial(partial: Path) -> Iterator[IO[bytes]]:
    """Open ``partial`` for reading and appending, holding an exclusive lock on it (POSIX) so
    two processes never write the same download; re-opens if the holder renamed it away."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        fcntl = None  # type: ignore[assignment]
    while True:
        f = open(partial, "a+b")  # noqa: SIM115 - closed below
        if fcntl is None:
            break
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                same = os.stat(partial).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            f.close()
            raise
        if same:
            break
        f.close()
    try:
        yield f
    finally:
        f.close()


def _hash_prefix(f: IO[bytes], n: int) -> Any:
    h = hashlib.sha256()
    f.seek(0)
    left = n
    while left:
        chunk = f.read(min(1 << 20, left))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    return h


def _fetch(
    client: httpx.Client,
    url: str,
    f: IO[bytes],
    size: int,
    headers: dict[str, str],
    advance: Any,
    shown: str | None = None,
) -> tuple[str, int, bool]:
    """Continue the download in ``f`` from its current length. Returns (sha256, length, resumed).
    ``shown``: the URL for messages (a presigned URL's signature is never shown)."""
    shown = shown or url
    f.seek(0, os.SEEK_END)
    have = f.tell()
    if have > size:
        f.truncate(0)
        have = 0
    h = _hash_prefix(f, have)
    if advance and have:
        advance(have)
    if have == size:
        return h.hexdigest(), have, have > 0
    req = dict(headers)
    if have:
        req["Range"] = f"bytes={have}-"
    try:
        with client.stream("GET", url, headers=req) as r:
            if (
                r.status_code == 206
                and have
                and r.headers.get("content-range", "").startswith(f"bytes {have}-")
            ):
                resumed = True
            elif r.status_code == 200:
                resumed = False
                if have:  # the server ignored Range: start over
                    if advance:
                        advance(-have)
                    f.truncate(0)
                    have = 0
                    h = hashlib.sha256()
            elif r.status_code == 416 and have:
                f.truncate(0)
                raise _Interrupted("the server refused to resume; starting over")
            else:
                hint = (
                    (
                        " (it needs a token: log in with `hf auth login` / set HF_TOKEN, or give "
                        "another source with --sources)"
                    )
                    if r.status_code in (401, 403)
                    else ""
                )
                raise RestoreError(f"cannot download {shown}: HTTP {r.status_code}{hint}")
            f.seek(0, os.SEEK_END)
            for chunk in r.iter_bytes():
                have += len(chunk)
                if have > size:
                    f.truncate(0)
                    raise RestoreError(
                        f"{shown} sent more than the expected {size} bytes; refusing it",
                        details={"url": shown, "expected_size": size},
                    )
                f.write(chunk)
                h.update(chunk)
                if advance:
                    advance(len(chunk))
    except httpx.HTTPError as e:
        f.flush()
        raise _Interrupted(type(e).__name__ if shown != url else f"{type(e).__name__}: {e}") from e
    f.flush()
    return h.hexdigest(), have, resumed


def download(
    source: ModelSource,
    dest: Path,
    *,
    sha256: str,
    size: int,
    progress: bool | Progress = True,
    token: str | None = None,
    hf_endpoint: str | None = None,
    civitai_url: str | None = None,
    retries: int = 3,
) -> Path:
    """Fetch ``source`` to ``dest``, verified by ``size`` and ``sha256``.

    Bytes go to ``dest.partial`` (an interrupted download resumes from it with ``Range``, also in
    a later run); only a verified file is renamed to ``dest``. A mismatch raises
    :class:`RestoreError` and removes the partial file. An existing ``dest`` is verified and
    returned, never overwritten. ``token`` is sent as a bearer token (Hugging Face sources
    default to huggingface_hub's token: ``HF_TOKEN`` or ``hf auth login``).
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.exists():
        return _verify_existing(dest, sha256, size)
    # an s3:// source: a presigned GET (boto3's credentials and endpoint), fetched like any URL
    url = (
        s3_presigned_url(source.url)
        if source.type == "s3"
        else source_url(source, hf_endpoint=hf_endpoint, civitai_url=civitai_url)
    )
    shown = source.url if source.type == "s3" else url
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    if token is None and source.type == "huggingface":
        with contextlib.suppress(ImportError, OSError):
            from huggingface_hub import get_token

            token = get_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with (
            progress_bar(progress, (source.file or dest.name)[-48:], size) as bar,
            _locked_partial(partial) as f,
        ):
            if dest.exists():  # another process finished it while we waited
                if f.seek(0, os.SEEK_END) == 0:
                    _remove(partial)
                return _verify_existing(dest, sha256, size)
            _download_into(
                f,
                partial,
                url,
                sha256=sha256,
                size=size,
                headers=headers,
                bar=bar,
                retries=retries,
                shown=shown,
            )
            f.flush()
            os.fsync(f.fileno())
            os.replace(partial, dest)
    except RestoreError:
        if partial.exists() and partial.stat().st_size == 0:
            _remove(partial)
        raise
    return dest


def _download_into(
    f: IO[bytes],
    partial: Path,
    url: str,
    *,
    sha256: str,
    size: int,
    headers: dict[str, str],
    bar: Any,
    retries: int,
    shown: str | None = None,
) -> None:
    advance = bar.advance if bar is not None else None
    name = shown or url
    timeout = httpx.Timeout(30.0, read=120.0)
    with httpx.Client(follow_redirects=True, timeout=timeout) as client:
        restarted = False
        attempt = 0
        while True:
            try:
                digest, got, resumed = _fetch(client, url, f, size, headers, advance, name)
                if got < size:  # the body ended early: resume from what arrived
                    raise _Interrupted(f"got {got} of {size} bytes")
            except _Interrupted as e:
                attempt += 1
                if attempt >= retries:
                    raise RestoreError(
                        f"downloading {name} was interrupted ({e}); run again to "
                        f"resume from {partial}"
                    ) from e
                logger.warning("download of %s interrupted (%s); resuming", name, e)
                if bar is not None:
                    bar.reset()
                continue
            if got == size and digest == sha256:
                return
            f.truncate(0)
            if resumed and not restarted:  # the old partial may be what was wrong
                logger.warning(
                    "%s: the resumed download did not verify; downloading it again", name
                )
                restarted = True
                if bar is not None:
                    bar.reset()
                continue
            _remove(partial)
            raise RestoreError(
                f"{name} is not the locked file: got {got} bytes with sha256 {digest}, expected "
                f"{size} bytes with sha256 {sha256}. Refusing it; give another source with "
                "--sources.",
                details={
                    "url": name,
                    "expected_sha256": sha256,
                    "sha256": digest,
                    "expected_size": size,
                    "size": got,
                },
            )


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _verify_existing(dest: Path, sha256: str, size: int) -> Path:
    got_size = dest.stat().st_size
    if got_size == size and sha256_file(dest) == sha256:
        return dest
    raise RestoreError(
        f"{dest} already exists and is not the expected file (size {got_size}, "
        f"expected {size} bytes with sha256 {sha256}); not overwriting it",
        details={"path": str(dest)},
    )
