"""How much latency does `comfypack serve` add over talking to ComfyUI directly?

One run starts, on 127.0.0.1:

* a real ``comfypack serve WORKFLOW`` (``bentoml serve``; it starts its own headless ComfyUI),
* a separate raw headless ComfyUI (:class:`comfypack.comfyui.process.ComfyUIProcess`),

then sends the same small PNG through the same workflow N times each, sequentially, after a
warm-up, and compares:

``served/json``       ``POST /generate`` with the image as base64 JSON; the PNG response is read.
``served/multipart``  the same, uploading the image as multipart/form-data (``--no-multipart``
                      drops it).
``raw``               what a hand-written client does against ComfyUI itself, over one aiohttp
                      session and one persistent websocket: ``POST /upload/image`` →
                      ``POST /prompt {prompt, client_id}`` → websocket ``executing`` with
                      ``node: null`` for that prompt → ``GET /history/{id}`` → ``GET /view``.
                      Written here against ComfyUI's protocol, not with comfypack's client, so
                      the baseline does not share comfypack's code.

Both paths do the same work in ComfyUI: a fresh upload name per request (so nothing is served
from ComfyUI's cache) and a fresh output subfolder per request, as comfypack's runner does.
The series are interleaved round by round (rotating their order) so drift on the machine hits
all of them alike. Before timing, each path's output is checked once: its pixels must be the
input's, inverted.

Usage::

    .venv/bin/python bench/serve_overhead.py [--n 200] [--warmup 20] [--workflow W] [--json]

Breakdown rows: ``in_service`` is the service's own ``X-ComfyPack-Duration-Ms`` and
``outside_service`` the rest of the round trip (BentoML's HTTP/ASGI stack); the raw client's
phases are timed one by one. Unless ``--no-profile``, two diagnostic series run comfypack's
own runner in this process (no BentoML): ``runner@raw`` against the raw ComfyUI and
``runner@served`` against the ComfyUI the service started, so a gap can be placed in BentoML,
in comfypack's runner, or in the ComfyUI instance.

The served/raw ratios of p50 and p95 are compared with ``--target`` (1.3); a served series that
answered any error fails too. Exit status: 0 done (1 with ``--strict`` when it failed), 2 the
benchmark could not run, 130 interrupted. Everything started is stopped in ``finally``, by
process group and then by PID for anything the service left behind (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import inspect
import io
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKFLOW = Path(__file__).resolve().parent / "workflows" / "invert.json"

logger = logging.getLogger("bench.serve_overhead")


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
    return {"n": len(values), "p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95),
            "mean_ms": sum(values) / len(values) if values else math.nan,
            "min_ms": min(values, default=math.nan), "max_ms": max(values, default=math.nan)}


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
        raise BenchError(f"{what}: the response is not an image ({len(output)} bytes: "
                         f"{output[:200]!r})") from e
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
        others = [k for k, n in prompt.items() if str(n.get("class_type", "")).startswith("ComfyPackInput")
                  and k not in inputs]
        if len(inputs) != 1 or len(outputs) != 1 or others:
            raise BenchError(f"{path}: the benchmark needs exactly one ComfyPackInputImage, one "
                             "ComfyPackOutputImage and no other ComfyPack inputs")
        return cls(prompt, inputs[0], str(prompt[inputs[0]]["inputs"].get("name") or "image"), outputs[0])

    def for_run(self, image_name: str, run_id: str) -> dict[str, Any]:
        prompt = json.loads(json.dumps(self.prompt))
        prompt[self.input_node]["inputs"]["image"] = image_name
        prompt[self.output_node]["inputs"]["filename_prefix"] = f"bench/{run_id}/out"
        return prompt


# -- processes ---------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
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


def _alive(pid: int) -> bool:
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
        self.known.update(_descendants(self.proc.pid))

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""


def start_served(workflow: Path, comfyui_dir: Path, log_dir: Path, env: dict[str, str] | None = None) -> Served:
    from comfypack.comfyui.process import free_port

    port = free_port()
    log = log_dir / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "comfypack.cli", "serve", str(workflow), "--host", "127.0.0.1",
           "--port", str(port), "--comfyui", str(comfyui_dir)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=ROOT, env={**os.environ, **(env or {})})
    logger.info("comfypack serve: pid %s on port %s (log %s)", proc.pid, port, log)
    return Served(f"http://127.0.0.1:{port}", proc, log)


def wait_served(served: Served, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            served.remember_children()
            if served.proc.poll() is not None:
                raise BenchError(f"comfypack serve exited ({served.proc.returncode}):\n{served.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{served.url}/readyz").status_code == 200:
                    served.remember_children()
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"comfypack serve not ready within {timeout:g} s:\n{served.log_tail()}")
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
    while (left := [p for p in served.known if _alive(p)]) and time.monotonic() < deadline:
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
        self.client_id = uuid.uuid4().hex
        self.session: Any = None
        self.ws: Any = None

    async def __aenter__(self) -> RawComfyUI:
        import aiohttp

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8),
                                             timeout=aiohttp.ClientTimeout(total=self.timeout))
        ws_url = self.base_url.replace("http://", "ws://", 1)
        self.ws = await self.session.ws_connect(f"{ws_url}/ws?clientId={self.client_id}", max_msg_size=0)
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
                raise RequestFailed(f"raw ComfyUI: {data.get('node_type')} failed: {data.get('exception_message')}")

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
        params = {"filename": ref["filename"], "subfolder": ref.get("subfolder", ""),
                  "type": ref.get("type", "output")}
        async with self.session.get(f"{self.base_url}/view", params=params) as resp:
            if resp.status != 200:
                raise RequestFailed(f"raw /view answered {resp.status}")
            data = await resp.read()
        t5 = time.perf_counter()
        ms = 1000.0
        return data, Sample((t5 - t0) * ms, {"upload": (t1 - t0) * ms, "prompt": (t2 - t1) * ms,
                                             "wait_ws": (t3 - t2) * ms, "history": (t4 - t3) * ms,
                                             "view": (t5 - t4) * ms})


class ServedClient:
    """``POST /<endpoint>`` of the served workflow, over one persistent aiohttp session."""

    def __init__(self, url: str, endpoint: str, field_name: str, png: bytes, timeout: float) -> None:
        self.url = f"{url.rstrip('/')}/{endpoint.strip('/')}"
        self.field_name = field_name
        self.png = png
        self.json_body = json.dumps({field_name: base64.b64encode(png).decode("ascii")}).encode()
        self.timeout = timeout
        self.session: Any = None

    async def __aenter__(self) -> ServedClient:
        import aiohttp

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8),
                                             timeout=aiohttp.ClientTimeout(total=self.timeout))
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
        return await self._post("served/json", data=self.json_body,
                                headers={"Content-Type": "application/json"})

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


def served_comfyui(served: Served) -> ComfyUIEndpoint | None:
    """The ComfyUI that the service started (found among its descendants), or None."""
    for pid in sorted(_descendants(served.proc.pid)):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.endswith("main.py") for a in argv) or "--port" not in argv:
            continue
        opts = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
        with contextlib.suppress(KeyError):
            return ComfyUIEndpoint(f"http://127.0.0.1:{opts['--port']}", Path(opts["--input-directory"]),
                                   Path(opts["--output-directory"]))
    return None


class RunnerInProcess:
    """Diagnostic series ``runner@…``: comfypack's own WorkflowRunner + ComfyUIClient, in this
    process (as the service drives them, without BentoML), against the raw ComfyUI
    (``runner@raw``) or against the ComfyUI the service started (``runner@served``).

    runner@raw − raw ≈ what comfypack's runner costs over a hand-written client;
    runner@served − runner@raw ≈ how the two ComfyUI instances differ;
    served in-service − runner@served ≈ what running inside the BentoML worker costs;
    served − in-service ≈ BentoML's HTTP stack. Phases come from timing subclasses of the
    client and runner, so comfypack's code runs unchanged.
    """

    def __init__(self, workflow_path: Path, comfyui: ComfyUIEndpoint, field_name: str, png: bytes,
                 timeout: float) -> None:
        self.workflow_path = workflow_path
        self.raw = comfyui
        self.body = {field_name: base64.b64encode(png).decode("ascii")}
        self.timeout = timeout
        self.client: Any = None
        self.runner: Any = None

    async def __aenter__(self) -> RunnerInProcess:
        from comfypack.comfyui.client import ComfyUIClient
        from comfypack.runner import WorkflowRunner
        from comfypack.workflow import load_workflow, parse_interface

        class TimedClient(ComfyUIClient):
            parts: dict[str, float] = {}

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

        class TimedRunner(WorkflowRunner):
            def _cleanup(self, client: Any, *a: Any, **kw: Any) -> Any:  # sync or async upstream
                t0 = time.perf_counter()

                def done() -> None:
                    client.parts["cleanup"] = (time.perf_counter() - t0) * 1000.0

                result = super()._cleanup(client, *a, **kw)
                if not inspect.isawaitable(result):
                    done()
                    return result

                async def timed() -> Any:
                    try:
                        return await result
                    finally:
                        done()

                return timed()

        wf = load_workflow(self.workflow_path)
        self.runner = TimedRunner(wf, parse_interface(wf))
        self.client = TimedClient(self.raw.url, output_dir=self.raw.output_dir, input_dir=self.raw.input_dir)
        await self.client.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.close()

    async def run(self) -> tuple[bytes, Sample]:
        from comfypack.errors import ComfyPackError

        parts: dict[str, float] = {}
        self.client.parts = parts
        t0 = time.perf_counter()
        try:
            request = await self.runner.prepare(dict(self.body))
            t1 = time.perf_counter()
            result = await self.runner.run(self.client, request, timeout=self.timeout)
        except ComfyPackError as e:
            raise RequestFailed(f"runner ({self.raw.url}): {e.__class__.__name__}: {e}") from e
        total = (time.perf_counter() - t0) * 1000.0
        single = result.single_file()
        if single is None:
            raise RequestFailed(f"runner ({self.raw.url}): the workflow did not produce exactly one file")
        run_ms = parts.pop("client.run", 0.0)
        out = {"prepare": (t1 - t0) * 1000.0, **parts,
               "wait_ws": run_ms - parts.get("prompt", 0.0) - parts.get("history", 0.0)}
        out["rest"] = total - sum(out.values())
        return single.data, Sample(total, out)


# -- the measurement ---------------------------------------------------------------------------

OPTIONAL_SERIES = {"served/multipart", "runner@raw", "runner@served"}
TIMED_SERIES = ("served/json", "served/multipart")  # the ones held to --target


async def _first_answer(name: str, fn: Any, errors: dict[str, list[str]], tries: int = 3) -> bytes:
    """The output of the first of ``tries`` requests that is not an error answer."""
    for attempt in range(tries):
        try:
            output, _ = await fn()
            return bytes(output)
        except RequestFailed as e:
            errors.setdefault(name, []).append(str(e))
            if attempt == tries - 1:
                raise
            logger.warning("%s (retrying)", e)
    raise AssertionError("unreachable")


async def measure(args: argparse.Namespace, workflow: TrivialWorkflow, served_url: str,
                  served_ui: ComfyUIEndpoint | None, raw_proc: Any,
                  png: bytes, broken: dict[str, str], errors: dict[str, list[str]]) -> dict[str, list[Sample]]:
    """Time every series. An optional series whose output is wrong goes into ``broken``; error
    answers go into ``errors`` (by series) and are not timed."""
    async with contextlib.AsyncExitStack() as stack:
        served = await stack.enter_async_context(
            ServedClient(served_url, args.endpoint, workflow.input_name, png, args.timeout))
        raw = await stack.enter_async_context(RawComfyUI(raw_proc.url, workflow, args.timeout))
        series: dict[str, Any] = {"served/json": served.run_json}
        if args.multipart:
            series["served/multipart"] = served.run_multipart
        series["raw"] = lambda: raw.run(png)
        if args.profile:
            targets = {"runner@raw": ComfyUIEndpoint(raw_proc.url, raw_proc.input_dir, raw_proc.output_dir)}
            if served_ui is not None:
                targets["runner@served"] = served_ui
            else:
                logger.warning("cannot find the service's ComfyUI; no runner@served series")
            for name, target in targets.items():
                runner = await stack.enter_async_context(
                    RunnerInProcess(args.workflow, target, workflow.input_name, png, args.timeout))
                series[name] = runner.run
        for name, fn in list(series.items()):  # correctness, once, before anything is timed
            try:
                output = await _first_answer(name, fn, errors)
                check_inverted(png, output, name)
            except BenchError as e:
                if name not in OPTIONAL_SERIES:
                    raise
                logger.error("%s is broken, so it is not timed: %s", name, e)
                broken[name] = str(e)
                del series[name]
                continue
            logger.info("%s: output checked (inverted, %d bytes)", name, len(output))
        samples: dict[str, list[Sample]] = {name: [] for name in series}
        names = list(series)
        for round_ in range(args.warmup + args.n):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                try:
                    _, sample = await series[name]()
                except RequestFailed as e:
                    errors.setdefault(name, []).append(str(e))
                    logger.warning("%s", e)
                    continue
                if round_ >= args.warmup:
                    samples[name].append(sample)
            if (round_ + 1) % 50 == 0:
                logger.info("round %d/%d", round_ + 1, args.warmup + args.n)
        return samples


def report(args: argparse.Namespace, samples: dict[str, list[Sample]], broken: dict[str, str],
           errors: dict[str, list[str]]) -> dict[str, Any]:
    series = {name: summarize([s.total_ms for s in xs]) for name, xs in samples.items()}
    parts: dict[str, dict[str, dict[str, float]]] = {}
    for name, xs in samples.items():
        keys = dict.fromkeys(k for s in xs for k in s.parts)
        parts[name] = {k: summarize([s.parts[k] for s in xs if k in s.parts]) for k in keys}
    raw = series["raw"]
    ratios = {}
    for name, st in series.items():
        if name == "raw":
            continue
        r50, r95 = st["p50_ms"] / raw["p50_ms"], st["p95_ms"] / raw["p95_ms"]
        ratios[name] = {"p50": r50, "p95": r95, "pass": r50 <= args.target and r95 <= args.target,
                        "held_to_target": name in TIMED_SERIES}
    return {"n": args.n, "warmup": args.warmup, "image_px": args.size, "target_ratio": args.target,
            "workflow": str(args.workflow), "series": series, "parts": parts, "ratios": ratios,
            "broken": broken,
            "errors": {name: {"count": len(msgs), "kinds": _error_kinds(msgs)} for name, msgs in errors.items()},
            "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count(),
            # a served path that answers errors fails, however fast its other answers are
            "pass": all(r["pass"] for r in ratios.values() if r["held_to_target"])
            and not any(name in errors for name in TIMED_SERIES)}


def _error_kinds(messages: list[str]) -> dict[str, int]:
    """Error messages with ids blanked, counted (so one race shows as one line)."""
    kinds: dict[str, int] = {}
    for m in messages:
        key = re.sub(r"[0-9a-f]{32}", "<id>", m)[:300]
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 110))
    table = Table(title=f"serve overhead: {Path(result['workflow']).name}, {result['image_px']}×"
                        f"{result['image_px']} PNG, n={result['n']} (warm-up {result['warmup']})")
    for col in ("series", "p50 ms", "p95 ms", "mean ms", "min ms", "p50 ×raw", "p95 ×raw",
                f"≤ {result['target_ratio']}×"):
        table.add_column(col, justify="left" if col == "series" else "right")
    for name, st in result["series"].items():
        r = result["ratios"].get(name)
        verdict = "" if r is None or not r["held_to_target"] else (
            "[green]pass[/]" if r["pass"] else "[red]FAIL[/]")
        table.add_row(name, f"{st['p50_ms']:.1f}", f"{st['p95_ms']:.1f}", f"{st['mean_ms']:.1f}",
                      f"{st['min_ms']:.1f}", "" if r is None else f"{r['p50']:.2f}",
                      "" if r is None else f"{r['p95']:.2f}", verdict)
        for part, pst in result["parts"].get(name, {}).items():
            table.add_row(f"  · {part}", f"{pst['p50_ms']:.1f}", f"{pst['p95_ms']:.1f}",
                          f"{pst['mean_ms']:.1f}", f"{pst['min_ms']:.1f}", "", "", "", style="dim")
    con.print(table)
    con.print(f"load average (1 min) at the end: {result['load_avg_1m']:.2f} on {result['cpus']} CPUs; "
              "runner@… rows are diagnostic (comfypack's runner in this process, on the raw ComfyUI "
              "or on the service's), not held to the target")
    for name, err in result["errors"].items():
        con.print(f"[yellow]{name}: {err['count']} error answer(s) (not timed)[/]")
        for kind, count in err["kinds"].items():
            con.print(f"  {count}× {kind}", markup=False)
    for name, why in result["broken"].items():
        con.print(f"[red]{name}: broken, not timed[/]: {why}")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="timed requests per series (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests per series first (default 20)")
    p.add_argument("--workflow", type=Path, default=DEFAULT_WORKFLOW,
                   help="API workflow: one ComfyPackInputImage → … → one ComfyPackOutputImage whose "
                        "output is the input inverted (default: bench/workflows/invert.json)")
    p.add_argument("--comfyui", type=Path, default=None,
                   help="ComfyUI tree (default: comfypack.config.default_comfyui_dir())")
    p.add_argument("--size", type=int, default=64, help="input image side in pixels (default 64)")
    p.add_argument("--endpoint", default="generate")
    p.add_argument("--no-multipart", dest="multipart", action="store_false",
                   help="skip the served multipart-upload series")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the diagnostic runner@raw / runner@served series (comfypack's runner in "
                        "this process against either ComfyUI, with its phases)")
    p.add_argument("--target", type=float, default=1.3, help="pass when served/raw p50 and p95 ≤ this")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for each server")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one request may take")
    p.add_argument("--serve-env", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                   help="extra environment for `comfypack serve` (repeatable), e.g. "
                        "BENTOML_CONFIG_OPTIONS=... to try BentoML settings")
    p.add_argument("--serve-log", type=Path, default=None, help="keep the service's log in this file")
    p.add_argument("--json", action="store_true", help="also print the numbers as JSON (on stdout, last)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the ratio misses --target")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.n < 1 or args.warmup < 0:
        p.error("--n must be ≥ 1 and --warmup ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.path.insert(0, str(ROOT))
    from comfypack.comfyui.process import ComfyUIProcess
    from comfypack.config import default_comfyui_dir

    args.workflow = args.workflow.resolve()
    workflow = TrivialWorkflow.load(args.workflow)
    comfyui_dir = (args.comfyui or default_comfyui_dir()).resolve()
    png = make_png(args.size)
    broken: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    served: Served | None = None
    raw: ComfyUIProcess | None = None
    with tempfile.TemporaryDirectory(prefix="comfypack-bench-") as tmp, sigterm_as_interrupt():
        try:
            served = start_served(args.workflow, comfyui_dir, Path(tmp), dict(args.serve_env))
            raw = ComfyUIProcess(comfyui_dir, startup_timeout=args.startup_timeout)
            raw.start()
            logger.info("raw ComfyUI: pid %s on %s", raw.pid, raw.url)
            raw.wait_ready()
            wait_served(served, args.startup_timeout)
            logger.info("both ready; %d warm-up + %d timed rounds", args.warmup, args.n)
            samples = asyncio.run(cancel_on_signals(measure(
                args, workflow, served.url, served_comfyui(served), raw, png, broken, errors)))
        except BenchError as e:
            logger.error("%s", e)
            return 2
        except (KeyboardInterrupt, asyncio.CancelledError):
            logger.error("interrupted; stopping what was started")
            return 130
        finally:
            if served is not None:
                stop_served(served)
                if args.serve_log is not None:
                    with contextlib.suppress(OSError):
                        args.serve_log.write_bytes(served.log.read_bytes())
            if raw is not None:
                raw.stop()
    result = report(args, samples, broken, errors)
    print_table(result)
    if args.json:
        print(json.dumps(result, indent=2))
    return 1 if args.strict and not result["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
