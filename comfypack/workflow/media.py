"""Turn a file input (upload bytes, base64, data: URI or http(s) URL) into checked bytes.

Errors are :class:`~comfypack.errors.InputFetchError` naming the field, so a bad file never
reaches ComfyUI. URLs are fetched under a :class:`~comfypack.files.urlfetch.UrlPolicy` (public
addresses only unless allowed; one deadline and size cap per fetch). Images are measured from
their header before anything decodes them: over :class:`InputLimits`' pixel limit is a 413.
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from ..errors import InputFetchError, RequestError
from ..files.urlfetch import UrlPolicy

__all__ = [
    "MediaFile",
    "Upload",
    "InputLimits",
    "decode_media",
    "fetch_url",
    "sniff",
    "DEFAULT_MAX_BYTES",
    "default_pixel_limits",
]

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
#: what one pixel of an input image costs a ComfyUI worker (float32 RGB + mask + PIL copies;
#: measured: a 9000×9000 PNG takes 3.6 GB)
BYTES_PER_PIXEL = 48


def default_pixel_limits(memory: int | None = None) -> tuple[int, int]:
    """``(per image, per request)`` pixel limits for a machine with ``memory`` bytes (default:
    this one's): one request's images may take a quarter of it (8–200 Mpx), one image at most
    40 Mpx."""
    if memory is None:
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            memory = 8 * 1024**3
    per_request = max(8_000_000, min(200_000_000, memory // 4 // BYTES_PER_PIXEL))
    return min(per_request, 40_000_000), per_request


@dataclass(frozen=True)
class InputLimits:
    """Limits on file inputs: where URLs may go (:class:`UrlPolicy`), the bytes of one input, and
    the pixels of one image and of all images in one request (checked before decoding)."""

    url: UrlPolicy = field(default_factory=UrlPolicy)
    max_bytes: int = DEFAULT_MAX_BYTES
    max_image_pixels: int = field(default_factory=lambda: default_pixel_limits()[0])
    max_request_pixels: int = field(default_factory=lambda: default_pixel_limits()[1])

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> InputLimits:
        """``COMFYPACK_URL_*`` (see :meth:`UrlPolicy.from_env`), ``COMFYPACK_MAX_IMAGE_PIXELS``,
        ``COMFYPACK_MAX_REQUEST_PIXELS``."""
        env = os.environ if env is None else env
        image, request = default_pixel_limits()
        return cls(
            url=UrlPolicy.from_env(env, max_bytes=max_bytes),
            max_bytes=max_bytes,
            max_image_pixels=int(env.get("COMFYPACK_MAX_IMAGE_PIXELS") or image),
            max_request_pixels=int(env.get("COMFYPACK_MAX_REQUEST_PIXELS") or request),
        )


_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?)(?P<b64>;base64)?,(?P<data>.*)$",
    re.S,
)


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
    pixels: int = field(default=0, compare=False)  # images: width × height × frames


# magic numbers of the formats ComfyUI can load, by kind
_AUDIO_MAGIC = [
    (8, b"WAVE", "audio/wav", ".wav"),
    (0, b"fLaC", "audio/flac", ".flac"),
    (0, b"OggS", "audio/ogg", ".ogg"),
    (0, b"ID3", "audio/mpeg", ".mp3"),
    (0, b"\xff\xfb", "audio/mpeg", ".mp3"),
    (0, b"\xff\xf3", "audio/mpeg", ".mp3"),
    (0, b"\xff\xf2", "audio/mpeg", ".mp3"),
    (4, b"ftyp", "audio/mp4", ".m4a"),
    (0, b"\x1a\x45\xdf\xa3", "audio/webm", ".webm"),
]
_VIDEO_MAGIC = [
    (4, b"ftyp", "video/mp4", ".mp4"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm", ".webm"),
    (8, b"AVI ", "video/x-msvideo", ".avi"),
    (0, b"GIF8", "image/gif", ".gif"),
    (0, b"OggS", "video/ogg", ".ogv"),
]


def _too_many_pixels(field: str, what: str, pixels: int, limit: int) -> RequestError:
    return InputFetchError.for_field(
        field,
        f"{what} {pixels / 1e6:.1f} Mpx; the limit is {limit / 1e6:.1f} Mpx (send a smaller image)",
        status=413,
    )


def image_pixels(data: bytes, field: str, max_pixels: int | None = None) -> tuple[str, int]:
    """``(format, width × height × frames)`` of an image, read from its header — nothing is
    decoded, and an image over ``max_pixels`` is refused (413) before its frames are counted."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "png").lower()
            width, height = im.size
            pixels = width * height
            if max_pixels is not None and pixels > max_pixels:
                raise _too_many_pixels(field, f"is a {width}×{height} image:", pixels, max_pixels)
            frames = int(getattr(im, "n_frames", 1) or 1)  # ComfyUI loads every frame
            pixels *= frames
            if max_pixels is not None and pixels > max_pixels:
                raise _too_many_pixels(
                    field, f"is {frames} frames of {width}×{height}:", pixels, max_pixels
                )
            im.verify()
    except Image.DecompressionBombError as e:  # a small file claiming billions of pixels
        raise InputFetchError.for_field(field, f"is too large an image ({e})", status=413) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputFetchError.for_field(
            field, f"is not a readable image ({e.__class__.__name__}: {e})"
        ) from e
    return fmt, pixels


def sniff(kind: str, data: bytes, field: str, *, max_pixels: int | None = None) -> tuple[str, str]:
    """Check ``data`` is a ``kind`` file; return ``(media_type, extension)``."""
    if not data:
        raise InputFetchError.for_field(field, "is empty")
    if kind == "image":
        fmt, _ = image_pixels(data, field, max_pixels)
        ext = {"jpeg": ".jpg", "mpo": ".jpg"}.get(fmt, f".{fmt}")
        return mimetypes.types_map.get(ext, f"image/{fmt}"), ext
    table = _AUDIO_MAGIC if kind == "audio" else _VIDEO_MAGIC if kind == "video" else []
    for offset, magic, media_type, ext in table:
        if data[offset : offset + len(magic)] == magic:
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
            field, "is not valid base64 (send a file upload, an http(s) URL, or base64 data)"
        ) from e


async def fetch_url(
    url: str,
    field: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float | None = None,
    policy: UrlPolicy | None = None,
) -> tuple[bytes, str | None]:
    """GET an http(s) URL under ``policy`` (default: public addresses only); ``max_bytes`` and
    ``timeout`` override the policy's cap and deadline. Returns ``(body, content type)``."""
    from dataclasses import replace

    from ..files import urlfetch

    policy = replace(policy or UrlPolicy(), max_bytes=max_bytes)
    if timeout is not None:
        policy = replace(policy, timeout=timeout)
    return await urlfetch.fetch_url(url, field, policy)


async def decode_media(
    kind: str,
    value: Upload | bytes | str,
    field: str,
    *,
    filename: str | None = None,
    max_bytes: int | None = None,
    limits: InputLimits | None = None,
) -> MediaFile:
    """Decode one file input of ``kind`` (image/file/audio/video) and check it against ``limits``
    (``max_bytes`` overrides their byte cap)."""
    limits = limits or InputLimits()
    if max_bytes is None:
        max_bytes = limits.max_bytes
    if isinstance(value, Upload):
        data = value.data
        filename = filename or value.filename
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        scheme = (
            urlparse(text).scheme.lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) else ""
        )
        if scheme in ("http", "https"):
            data, _ = await fetch_url(text, field, max_bytes=max_bytes, policy=limits.url)
            filename = filename or unquote(urlparse(text).path.rsplit("/", 1)[-1]) or None
        elif scheme == "data":
            m = _DATA_URI.match(text)
            if not m:
                raise InputFetchError.for_field(field, "is a malformed data: URI")
            payload = m.group("data")
            data = _b64(payload, field) if m.group("b64") else unquote(payload).encode()
        elif scheme and len(scheme) > 1:
            raise InputFetchError.for_field(
                field, f"URL scheme {scheme!r} is not allowed; use http(s), base64 or a file upload"
            )
        else:
            data = _b64(text, field)
    else:
        raise InputFetchError.for_field(
            field, "must be a file upload, an http(s) URL or base64 text"
        )
    if len(data) > max_bytes:
        raise InputFetchError.for_field(field, f"is larger than {max_bytes} bytes", status=413)
    pixels = 0
    if kind == "image" and data:
        fmt, pixels = image_pixels(data, field, limits.max_image_pixels)
        ext = {"jpeg": ".jpg", "mpo": ".jpg"}.get(fmt, f".{fmt}")
        media_type = mimetypes.types_map.get(ext, f"image/{fmt}")
    else:
        media_type, ext = sniff(kind, data, field, max_pixels=limits.max_image_pixels)
    if kind == "file":
        # the client's name only lends a plain extension: never a path, spaces or a long tail
        base = re.split(r"[/\\]", filename or "")[-1]
        guessed = mimetypes.guess_type(base)[0]
        media_type = guessed or media_type
        suffix = base.rsplit(".", 1)[1] if "." in base else ""
        ext = f".{suffix}" if re.fullmatch(r"[A-Za-z0-9_-]{1,16}", suffix) else ""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", field)
    return MediaFile(data, f"{safe}{ext}", media_type, pixels)
