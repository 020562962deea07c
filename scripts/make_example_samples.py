"""Write each example's sample input assets and its ``request.json``.

Run once (``.venv/bin/python scripts/make_example_samples.py``) and commit the results; the files are
small and deterministic enough that re-running only changes them if this script changes.

For every ``examples/workflows/<name>/``:

* ``example.<ext>`` — the file the workflow's input node names, so the workflow also runs from the
  ComfyUI canvas once the file is copied into ComfyUI's ``input/`` directory;
* ``request.json`` — an example request body for the generated service (media as base64 ``data:``
  URIs of those same files).
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import wave
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"


def data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def quadrants(size: int = 32) -> bytes:
    """Four coloured quadrants: easy to recognise after resize, blur and invert."""
    h = size // 2
    a = np.zeros((size, size, 3), np.uint8)
    a[:h, :h] = (220, 40, 40)
    a[:h, h:] = (40, 180, 60)
    a[h:, :h] = (40, 80, 220)
    a[h:, h:] = (240, 220, 60)
    return png(a)


def rgba_disc(size: int = 32) -> bytes:
    """An orange picture whose alpha is an opaque disc on a transparent ground."""
    y, x = np.mgrid[:size, :size]
    inside = (x - size / 2 + 0.5) ** 2 + (y - size / 2 + 0.5) ** 2 <= (size * 0.35) ** 2
    a = np.zeros((size, size, 4), np.uint8)
    a[..., :3] = (250, 150, 30)
    a[..., 3] = np.where(inside, 255, 0)
    return png(a)


def sine_wav(
    seconds: float = 0.25, rate: int = 16000, amplitude: float = 0.5, freq: float = 440.0
) -> bytes:
    n = int(seconds * rate)
    frames = b"".join(
        struct.pack("<h", round(amplitude * 32767 * math.sin(2 * math.pi * freq * i / rate)))
        for i in range(n)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def moving_bar_mp4(frames: int = 8, size: int = 32, fps: int = 8) -> bytes:
    """A white bar sliding across a blue ground (H.264, yuv420p)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"threads": "1"}
        for i in range(frames):
            arr = np.zeros((size, size, 3), np.uint8)
            arr[:] = (30, 60, 160)
            x = i * size // frames
            arr[:, x : x + size // frames] = (250, 250, 250)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def write(name: str, files: dict[str, bytes], request: dict) -> None:
    folder = EXAMPLES / name
    for filename, data in files.items():
        (folder / filename).write_bytes(data)
    (folder / "request.json").write_text(json.dumps(request, indent=2) + "\n")


def main() -> None:
    image = quadrants()
    write(
        "image_adjust",
        {"example.png": image},
        {
            "image": data_uri("image/png", image),
            "upscale_method": "bicubic",
            "width": 48,
            "height": 32,
            "blur_radius": 2,
            "sigma": 1.5,
        },
    )

    text = b"Hello from comfypack!\n"
    rgba = rgba_disc()
    write(
        "image_mask_text",
        {"example.png": rgba, "example.txt": text},
        {
            "image": data_uri("image/png", rgba),
            "seed": 42,
            "noise": 0.2,
            "caption": "an orange disc",
            "attachment": data_uri("text/plain", text),
        },
    )

    write(
        "text_tools",
        {},
        {
            "text": "Hello",
            "suffix": " comfypack",
            "case": "Title Case",
            "needle": "Comfy",
            "case_sensitive": True,
        },
    )

    audio = sine_wav()
    write(
        "audio_volume",
        {"example.wav": audio},
        {"audio": data_uri("audio/wav", audio), "gain_db": -6},
    )

    video = moving_bar_mp4()
    write("video_invert", {"example.mp4": video}, {"video": data_uri("video/mp4", video)})

    for folder in sorted(EXAMPLES.iterdir()):
        if folder.is_dir():
            sizes = {
                p.name: p.stat().st_size
                for p in sorted(folder.iterdir())
                if p.name != "workflow_api.json"
            }
            print(folder.name, sizes)


if __name__ == "__main__":
    main()
