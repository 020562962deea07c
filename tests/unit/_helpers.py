"""Small builders shared by the unit tests (workflow nodes, sample media)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "workflows"
EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "workflow_api.json").is_file())


def example(name: str) -> Path:
    return EXAMPLES / name / "workflow_api.json"


def node(class_type: str, title: str | None = None, **inputs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"class_type": class_type, "inputs": inputs}
    if title:
        out["_meta"] = {"title": title}
    return out


def inp(kind: str, name: str, **widgets: Any) -> dict[str, Any]:
    """A ComfyPackInput<Kind> node, e.g. ``inp("Int", "width", default=1, min=0, max=9)``."""
    return node(f"ComfyPackInput{kind}", **{"name": name, "description": "", **widgets})


def out(kind: str, name: str, **widgets: Any) -> dict[str, Any]:
    return node(f"ComfyPackOutput{kind}", **{"name": name, **widgets})


def save_image(source: str = "1") -> dict[str, Any]:
    return node("SaveImage", images=[source, 0], filename_prefix="ComfyUI")


def png_bytes(
    size: tuple[int, int] = (4, 3), color: tuple[int, int, int] = (10, 100, 200)
) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG claiming ``width`` x ``height`` pixels (no real pixel data)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def wav_bytes(frames: int = 8) -> bytes:
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * frames)
    return buf.getvalue()


FLAC_MAGIC = b"fLaC\x00\x00\x00\x22" + b"\x00" * 34
MP4_MAGIC = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
WEBM_MAGIC = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01"
