"""Shared pieces of comfypack's benchmarks (``bench/*.py``): starting and stopping a served
workflow, a hand-written raw ComfyUI client, the served client, statistics and output checks.

Used as ``from _common import ...`` by the scripts next to it (run as ``python bench/X.py``, so
this folder is on ``sys.path``). Everything binds 127.0.0.1; :func:`stop_served` stops a service
by process group and then by PID for anything it left behind (its ComfyUI children run in a
session of their own).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORKFLOW = BENCH_DIR / "workflows" / "invert.json"

__all__ = [
    "ROOT",
    "BENCH_DIR",
    "DEFAULT_WORKFLOW",
    "BenchError",
    "RequestFailed",
    "percentile",
    "summarize",
    "make_png",
    "check_inverted",
    "TrivialWorkflow",
    "descendants",
    "alive",
    "Served",
    "start_served",
    "wait_served",
    "stop_served",
    "sigterm_as_interrupt",
    "cancel_on_signals",
    "Sample",
    "RawComfyUI",
    "ServedClient",
    "ComfyUIEndpoint",
    "comfyui_children",
    "served_comfyui",
    "wait_comfyui_children",
    "error_kinds",
    "key_value",
    "setup_logging",
]

logger = logging.getLogger("bench")


class BenchError(Exception):
    """The benchmark could not run (a server did not start, or a path gave a wrong answer)."""


class RequestFailed(BenchError):
    """One request got an error answer; counted per series, not timed."""


# -- statistics --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "mean_ms": sum(values) / len(values) if values else math.nan,
        "min_ms": min(values, default=math.nan),
        "max_ms": max(values, default=math.nan),
    }


# -- the input image and the correctness check --------------------------------------------------


def make_png(size: int) -> bytes:
    """A deterministic RGB test card (gradients + a checker) so inversion is visible everywhere."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    r = (x * 255 // max(size - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(size - 1, 1)).astype(np.uint8)
    b = np.where(((x // 8) + (y // 8)) % 2 == 0, 40, 215).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([r, g, b], axis=-1), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def check_inverted(source_png: bytes, output: bytes, what: str) -> None:
    """Raise :class:`BenchError` unless ``output`` is ``source_png`` with every pixel inverted."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        out = np.asarray(Image.open(io.BytesIO(output)).convert("RGB"), dtype=np.int16)
    except (UnidentifiedImageError, OSError) as e:
        raise BenchError(
            f"{what}: the response is not an image ({len(output)} bytes: {output[:200]!r})"
        ) from e
    src = np.asarray(Image.open(io.BytesIO(source_png)).convert("RGB"), dtype=np.int16)
    if out.shape != src.shape:
        raise BenchError(f"{what}: output is {out.shape}, input was {src.shape}")
    worst = int(np.abs(out - (255 - src)).max())
    if worst > 1:
        raise BenchError(f"{what}: output is not the inverted input (max pixel error {worst})")


# -- the workflow ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrivialWorkflow:
    """An API-format workflow with one ComfyPackInputImage and one ComfyPackOutputImage."""

    prompt: dict[str, Any]
    input_node: str
    input_name: str  # the request field of the served endpoint
    output_node: str

    @classmethod
    def load(cls, path: Path) -> TrivialWorkflow:
        prompt = json.loads(path.read_text())
        inputs = [k for k, n in prompt.items() if n.get("class_type") == "ComfyPackInputImage"]
        outputs = [k for k, n in prompt.items() if n.get("class_type") == "ComfyPackOutputImage"]
        others = [
            k
            for k, n in prompt.items()
            if str(n.get("class_type", "")).startswith("ComfyPackInput") and k not in inputs
        ]
        if len(inputs) != 1 or len(outputs) != 1 or others:
            raise BenchError(
                f"{path}: the benchmark needs exactly one ComfyPackInputImage, one "
                "ComfyPackOutputImage and no other ComfyPack inputs"
            )
        return cls(
            prompt, inputs[0], str(prompt[inputs[0]]["inputs"].get("name") or "image"), outputs[0]
        )

    def for_run(self, image_name: str, run_id: str) -> dict[str, Any]:
        prompt = json.loads(json.dumps(self.prompt))
        prompt[self.input_node]["inputs"]["image"] = image_name
        prompt[self.output_node]["inputs"]["filename_prefix"] = f"bench/{run_id}/out"
        return prompt


# -- processes ---------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """PIDs below ``pid`` (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    known: set[int] = field(default_factory=set)  # its descendants seen so far (ComfyUI included)

    def remember_children(self) -> None:
        self.known.update(descendants(self.proc.pid))

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""


def start_served(
    workflow: Path, comfyui_dir: Path, log_dir: Path, env: dict[str, str] | None = None
) -> Served:
    from comfypack.comfyui.process import free_port

    port = free_port()
    log = log_dir / f"serve-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "comfypack.cli",
        "serve",
        str(workflow),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--comfyui",
        str(comfyui_dir),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
    logger.info("comfypack serve: pid %s on port %s (log %s)", proc.pid, port, log)
    return Served(f"http://127.0.0.1:{port}", proc, log)


def wait_served(served: Served, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            served.remember_children()
            if served.proc.poll() is not None:
                raise BenchError(
                    f"comfypack serve exited ({served.proc.returncode}):\n{served.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{served.url}/readyz").status_code == 200:
                    served.remember_children()
                    return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"comfypack serve not ready within {timeout:g} s:\n{served.log_tail()}"
                )
            time.sleep(0.25)


def stop_served(served: Served, grace: float = 30.0) -> None:
    """SIGTERM its process group, SIGKILL after ``grace``; then kill any descendant left behind
    (its ComfyUI runs in a session of its own)."""
    served.remember_children()
    proc = served.proc
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    deadline = time.monotonic() + 10
    while (left := [p for p in served.known if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        logger.warning("pid %s (started by comfypack serve) outlived it; killing it", pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so every ``finally`` runs."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def cancel_on_signals(coro: Any) -> Any:
    """Await ``coro``; SIGINT or SIGTERM cancels it (so its ``async with`` blocks close cleanly)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await coro
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


# -- the clients -------------------------------------------------------------------------------


@dataclass
class Sample:
    total_ms: float
    parts: dict[str, float] = field(default_factory=dict)


class RawComfyUI:
    """A hand-written ComfyUI client: one HTTP session, one websocket, sequential prompts."""

    def __init__(self, base_url: str, workflow: TrivialWorkflow, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.workflow = workflow
        self.timeout = timeout
        self.client_id = str(uuid.uuid4())
        self.session: Any = None
        self.ws: Any = None

    async def __aenter__(self) -> RawComfyUI:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        ws_url = self.base_url.replace("http://", "ws://", 1)
        self.ws = await self.session.ws_connect(
            f"{ws_url}/ws?clientId={self.client_id}", max_msg_size=0
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    async def _wait_done(self, prompt_id: str) -> None:
        import aiohttp

        while True:
            msg = await self.ws.receive(timeout=self.timeout)
            if msg.type == aiohttp.WSMsgType.BINARY:
                continue  # previews
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BenchError(f"raw ComfyUI websocket closed ({msg.type})")
            event = json.loads(msg.data)
            data = event.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if event.get("type") == "executing" and data.get("node") is None:
                return
            if event.get("type") == "execution_error":
                raise RequestFailed(
                    f"raw ComfyUI: {data.get('node_type')} failed: {data.get('exception_message')}"
                )

    async def run(self, png: bytes) -> tuple[bytes, Sample]:
        import aiohttp

        run_id = uuid.uuid4().hex
        t0 = time.perf_counter()
        form = aiohttp.FormData()
        form.add_field("image", png, filename=f"{run_id}.png", content_type="image/png")
        form.add_field("subfolder", "bench")
        form.add_field("type", "input")
        async with self.session.post(f"{self.base_url}/upload/image", data=form) as resp:
            if resp.status != 200:
                raise RequestFailed(f"raw upload answered {resp.status}: {await resp.text()}")
            info = await resp.json()
        name = f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]
        t1 = time.perf_counter()
        body = {"prompt": self.workflow.for_run(name, run_id), "client_id": self.client_id}
        async with self.session.post(f"{self.base_url}/prompt", json=body) as resp:
            if resp.status != 200:
                raise RequestFailed(f"raw /prompt answered {resp.status}: {await resp.text()}")
            prompt_id = (await resp.json())["prompt_id"]
        t2 = time.perf_counter()
        await self._wait_done(prompt_id)
        t3 = time.perf_counter()
        async with self.session.get(f"{self.base_url}/history/{prompt_id}") as resp:
            history = await resp.json()
        images = history[prompt_id]["outputs"][self.workflow.output_node]["images"]
        t4 = time.perf_counter()
        ref = images[0]
        params = {
            "filename": ref["filename"],
            "subfolder": ref.get("subfolder", ""),
            "type": ref.get("type", "output"),
        }
        async with self.session.get(f"{self.base_url}/view", params=params) as resp:
            if resp.status != 200:
                raise RequestFailed(f"raw /view answered {resp.status}")
            data = await resp.read()
        t5 = time.perf_counter()
        ms = 1000.0
        return data, Sample(
            (t5 - t0) * ms,
            {
                "upload": (t1 - t0) * ms,
                "prompt": (t2 - t1) * ms,
                "wait_ws": (t3 - t2) * ms,
                "history": (t4 - t3) * ms,
                "view": (t5 - t4) * ms,
            },
        )


class ServedClient:
    """``POST /<endpoint>`` of the served workflow, over one persistent aiohttp session."""

    def __init__(
        self, url: str, endpoint: str, field_name: str, png: bytes, timeout: float
    ) -> None:
        self.url = f"{url.rstrip('/')}/{endpoint.strip('/')}"
        self.field_name = field_name
        self.png = png
        self.json_body = json.dumps({field_name: base64.b64encode(png).decode("ascii")}).encode()
        self.timeout = timeout
        self.session: Any = None

    async def __aenter__(self) -> ServedClient:
        import aiohttp

        # BentoML's server (uvicorn) drops a keep-alive connection idle for 5 s; close ours first,
        # so a client that sat out a while never sends on a connection the server is closing
        connector = aiohttp.TCPConnector(limit=8, keepalive_timeout=2.0)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def _post(self, what: str, **kw: Any) -> tuple[bytes, Sample]:
        t0 = time.perf_counter()
        async with self.session.post(self.url, **kw) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RequestFailed(f"{what} answered {resp.status}: {data[:500]!r}")
            inside = resp.headers.get("X-ComfyPack-Duration-Ms")
        total = (time.perf_counter() - t0) * 1000.0
        parts = {}
        if inside is not None:
            parts = {"in_service": float(inside), "outside_service": total - float(inside)}
        return data, Sample(total, parts)

    async def run_json(self) -> tuple[bytes, Sample]:
        return await self._post(
            "served/json", data=self.json_body, headers={"Content-Type": "application/json"}
        )

    async def run_payload(
        self, payload: dict[str, Any], what: str = "served/json"
    ) -> tuple[bytes, Sample]:
        """``POST`` this JSON body (instead of the one built from ``png``)."""
        return await self._post(
            what, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )

    async def run_multipart(self) -> tuple[bytes, Sample]:
        import aiohttp

        form = aiohttp.FormData()
        form.add_field(self.field_name, self.png, filename="input.png", content_type="image/png")
        return await self._post("served/multipart", data=form)


@dataclass(frozen=True)
class ComfyUIEndpoint:
    """Where a ComfyUI listens and keeps its files (so comfypack's client reads outputs from disk)."""

    url: str
    input_dir: Path
    output_dir: Path


def comfyui_children(served: Served) -> dict[int, ComfyUIEndpoint]:
    """Every ComfyUI that the service started (found among its descendants), by PID."""
    found: dict[int, ComfyUIEndpoint] = {}
    for pid in sorted(descendants(served.proc.pid)):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith("main.py") for a in argv) or "--port" not in argv:
            continue
        opts = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
        with contextlib.suppress(KeyError):
            found[pid] = ComfyUIEndpoint(
                f"http://127.0.0.1:{opts['--port']}",
                Path(opts["--input-directory"]),
                Path(opts["--output-directory"]),
            )
    return found


def served_comfyui(served: Served) -> ComfyUIEndpoint | None:
    """The (first) ComfyUI that the service started, or None."""
    return next(iter(comfyui_children(served).values()), None)


def wait_comfyui_children(served: Served, n: int, timeout: float) -> dict[int, ComfyUIEndpoint]:
    """Wait until ``n`` ComfyUIs under the service answer HTTP (``/readyz`` is up with the first)."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            served.remember_children()
            if served.proc.poll() is not None:
                raise BenchError(
                    f"comfypack serve exited ({served.proc.returncode}):\n{served.log_tail()}"
                )
            children = comfyui_children(served)
            up = {}
            for pid, ui in children.items():
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{ui.url}/system_stats").status_code == 200:
                        up[pid] = ui
            if len(up) >= n:
                return up
            if time.monotonic() > deadline:
                raise BenchError(
                    f"only {len(up)} of {n} ComfyUI workers answer after {timeout:g} s:\n"
                    f"{served.log_tail()}"
                )
            time.sleep(0.25)


def error_kinds(messages: list[str]) -> dict[str, int]:
    """Error messages with ids blanked, counted (so one race shows as one line)."""
    kinds: dict[str, int] = {}
    for m in messages:
        key = re.sub(r"[0-9a-f]{32}", "<id>", m)[:300]
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def key_value(text: str) -> tuple[str, str]:
    """argparse type for ``KEY=VALUE``."""
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def phase_client(url: str, input_dir: Path, output_dir: Path) -> Any:
    """comfypack's :class:`~comfypack.comfyui.client.ComfyUIClient`, unchanged but for timing its
    calls into ``client.parts`` (ms); the class is made here so comfypack is imported lazily."""
    from comfypack.comfyui.client import ComfyUIClient

    class Timed(ComfyUIClient):
        parts: dict[str, float]

        async def _timed(self, key: str, coro: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await coro
            finally:
                self.parts[key] = self.parts.get(key, 0.0) + (time.perf_counter() - t0) * 1000.0

        async def upload(self, *a: Any, **kw: Any) -> Any:
            return await self._timed("upload", super().upload(*a, **kw))

        async def queue_prompt(self, *a: Any, **kw: Any) -> Any:
            return await self._timed("prompt", super().queue_prompt(*a, **kw))

        async def get_json(self, *a: Any, **kw: Any) -> Any:
            return await self._timed("history", super().get_json(*a, **kw))

        async def read_file(self, *a: Any, **kw: Any) -> Any:
            return await self._timed("read_file", super().read_file(*a, **kw))

        async def run(self, *a: Any, **kw: Any) -> Any:
            return await self._timed("client.run", super().run(*a, **kw))

    client = Timed(url, input_dir=input_dir, output_dir=output_dir)
    client.parts = {}
    return client
