"""Turn a file input (upload bytes, base64, data: URI or http(s) URL) into checked bytes.

Errors are :class:`~comfypack.errors.InputFetchError` naming the field, so a bad file never
reaches ComfyUI.
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from .errors import InputFetchError

__all__ = ["MediaFile", "Upload", "decode_media", "fetch_url", "sniff", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?)(?P<b64>;base64)?,(?P<data>.*)$", re.S)


@dataclass(frozen=True)
class Upload:
    """A file sent as a multipart upload: its bytes and the client's file name."""

    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class MediaFile:
    data: bytes
    filename: str
    media_type: str


# magic numbers of the formats ComfyUI can load, by kind
_AUDIO_MAGIC = [(8, b"WAVE", "audio/wav", ".wav"), (0, b"fLaC", "audio/flac", ".flac"),
                (0, b"OggS", "audio/ogg", ".ogg"), (0, b"ID3", "audio/mpeg", ".mp3"),
                (0, b"\xff\xfb", "audio/mpeg", ".mp3"), (0, b"\xff\xf3", "audio/mpeg", ".mp3"),
                (0, b"\xff\xf2", "audio/mpeg", ".mp3"), (4, b"ftyp", "audio/mp4", ".m4a"),
                (0, b"\x1a\x45\xdf\xa3", "audio/webm", ".webm")]
_VIDEO_MAGIC = [(4, b"ftyp", "video/mp4", ".mp4"), (0, b"\x1a\x45\xdf\xa3", "video/webm", ".webm"),
                (8, b"AVI ", "video/x-msvideo", ".avi"), (0, b"GIF8", "image/gif", ".gif"),
                (0, b"OggS", "video/ogg", ".ogv")]


def sniff(kind: str, data: bytes, field: str) -> tuple[str, str]:
    """Check ``data`` is a ``kind`` file; return ``(media_type, extension)``."""
    if not data:
        raise InputFetchError.for_field(field, "is empty")
    if kind == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = (im.format or "png").lower()
                im.verify()
        except Image.DecompressionBombError as e:  # a small file claiming billions of pixels
            raise InputFetchError.for_field(field, f"is too large an image ({e})", status=413) from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise InputFetchError.for_field(field, f"is not a readable image ({e.__class__.__name__}: {e})") from e
        ext = {"jpeg": ".jpg", "mpo": ".jpg"}.get(fmt, f".{fmt}")
        return mimetypes.types_map.get(ext, f"image/{fmt}"), ext
    table = _AUDIO_MAGIC if kind == "audio" else _VIDEO_MAGIC if kind == "video" else []
    for offset, magic, media_type, ext in table:
        if data[offset:offset + len(magic)] == magic:
            return media_type, ext
    if table:
        raise InputFetchError.for_field(field, f"is not a recognised {kind} file")
    return "application/octet-stream", ""


def _b64(text: str, field: str) -> bytes:
    cleaned = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputFetchError.for_field(
            field, "is not valid base64 (send a file upload, an http(s) URL, or base64 data)") from e


async def fetch_url(url: str, field: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    timeout: float = 15.0) -> tuple[bytes, str | None]:
    """GET an http(s) URL (size-capped, with timeouts); returns ``(body, content type)``."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=True,
                                     max_redirects=5) as client:
            async with client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise InputFetchError.for_field(field, f"fetching {url} answered HTTP {resp.status_code}")
                if resp.url.scheme not in ("http", "https"):
                    raise InputFetchError.for_field(field, "redirected to a non-http(s) URL")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise InputFetchError.for_field(
                            field, f"the file at {url} is larger than {max_bytes} bytes", status=413)
                    chunks.append(chunk)
                return b"".join(chunks), resp.headers.get("content-type")
    except httpx.HTTPError as e:
        raise InputFetchError.for_field(field, f"cannot fetch {url}: {e.__class__.__name__}: {e}") from e


async def decode_media(kind: str, value: Upload | bytes | str, field: str, *,
                       filename: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> MediaFile:
    """Decode one file input of ``kind`` (image/file/audio/video) and check it."""
    if isinstance(value, Upload):
        data = value.data
        filename = filename or value.filename
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        scheme = urlparse(text).scheme.lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) else ""
        if scheme in ("http", "https"):
            data, _ = await fetch_url(text, field, max_bytes=max_bytes)
            filename = filename or unquote(urlparse(text).path.rsplit("/", 1)[-1]) or None
        elif scheme == "data":
            m = _DATA_URI.match(text)
            if not m:
                raise InputFetchError.for_field(field, "is a malformed data: URI")
            payload = m.group("data")
            data = _b64(payload, field) if m.group("b64") else unquote(payload).encode()
        elif scheme and len(scheme) > 1:
            raise InputFetchError.for_field(
                field, f"URL scheme {scheme!r} is not allowed; use http(s), base64 or a file upload")
        else:
            data = _b64(text, field)
    else:
        raise InputFetchError.for_field(field, "must be a file upload, an http(s) URL or base64 text")
    if len(data) > max_bytes:
        raise InputFetchError.for_field(field, f"is larger than {max_bytes} bytes", status=413)
    media_type, ext = sniff(kind, data, field)
    if kind == "file":
        # the client's name only lends a plain extension: never a path, spaces or a long tail
        base = re.split(r"[/\\]", filename or "")[-1]
        guessed = mimetypes.guess_type(base)[0]
        media_type = guessed or media_type
        suffix = base.rsplit(".", 1)[1] if "." in base else ""
        ext = f".{suffix}" if re.fullmatch(r"[A-Za-z0-9_-]{1,16}", suffix) else ""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", field)
    return MediaFile(data, f"{safe}{ext}", media_type)
