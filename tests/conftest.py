"""Shared fixtures: a real headless ComfyUI, a real `bentoml serve`, a local HTTP file server.

Servers bind 127.0.0.1 only, start with bounded waits, and are stopped by PID by the fixture.
Tests that need ComfyUI are skipped with a reason naming what is missing when it is not
provisioned — unless COMFYPACK_REQUIRE_COMFYUI=1 (set by `make test` / CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "workflows"
TEST_WORKFLOWS = ROOT / "tests" / "workflows"
# every ComfyUI the tests start (directly or through `comfypack serve`) also loads the test nodes
os.environ.setdefault("COMFYPACK_EXTRA_NODES_DIRS", str(ROOT / "tests" / "nodes"))


def _comfyui_dir() -> Path:
    from comfypack.config import default_comfyui_dir

    return default_comfyui_dir()


def require_comfyui() -> Path:
    path = _comfyui_dir()
    if not (path / "main.py").is_file():
        msg = f"no provisioned ComfyUI at {path}: run `make setup` (or `comfypack comfyui install`)"
        if os.environ.get("COMFYPACK_REQUIRE_COMFYUI") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def comfyui() -> Iterator[object]:
    """One real headless ComfyUI (with comfypack's nodes) for the whole session."""
    from comfypack.comfyui.process import ComfyUIProcess

    proc = ComfyUIProcess(require_comfyui(), startup_timeout=180)
    proc.start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def stop_group(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session``), SIGKILL it
    after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``pgid`` (Linux ``/proc``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


# -- sample media -----------------------------------------------------------------------------


def png_bytes(
    size: tuple[int, int] = (16, 16), color: tuple[int, ...] = (10, 100, 200), mode: str = "RGB"
) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(
    seconds: float = 0.25, rate: int = 16000, amplitude: float = 0.5, freq: float = 440.0
) -> bytes:
    import math
    import struct
    import wave

    n = int(seconds * rate)
    frames = b"".join(
        struct.pack("<h", int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / rate)))
        for i in range(n)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def mp4_bytes(
    frames: int = 8, size: int = 32, color: tuple[int, int, int] = (40, 120, 200), fps: int = 8
) -> bytes:
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = size
        stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            arr = np.zeros((size, size, 3), dtype=np.uint8)
            arr[:, :] = color
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


# -- a local HTTP file server (stands in for "the internet" for URL inputs) ---------------------


@dataclass
class FileServer:
    url: str
    root: Path

    def put(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return f"{self.url}/{name}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server(handler: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """A threaded ``http.server`` with ``handler`` on ``host`` at a free port; yields its base URL
    and stops it (the local stand-in for any web server a test needs)."""
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    root = tmp_path_factory.mktemp("served")
    with http_server(functools.partial(_QuietHandler, directory=str(root))) as url:
        yield FileServer(url, root)


# -- a real `bentoml serve` ---------------------------------------------------------------------


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def bentoml_serve(
    workflow: Path,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
    comfyui_url: str | None = None,
    pack: bool = False,
) -> Iterator[Served]:
    """`comfypack serve WORKFLOW` on a free port (its own ComfyUI, or attached to ``comfyui_url``);
    waits for /readyz; stops the process group. ``pack``: WORKFLOW is a .cpack.zip, which brings
    its own ComfyUI (no --comfyui)."""
    from comfypack.comfyui.process import free_port

    comfyui_dir = require_comfyui()
    port = free_port()
    log = log_dir / f"serve-{workflow.parent.name}-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "comfypack.cli",
        "serve",
        str(workflow),
        "--port",
        str(port),
        *(
            ["--comfyui-url", comfyui_url]
            if comfyui_url
            else []
            if pack
            else ["--comfyui", str(comfyui_dir)]
        ),
        "--state-dir",
        str(log_dir / f"state-{port}"),
    ]  # not under COMFYPACK_HOME: tests leave no trace
    full_env = {**os.environ, **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"bentoml serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"bentoml serve not ready in {timeout} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield Served(url, proc, log)
    finally:
        stop_group(proc)
