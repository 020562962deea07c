"""Does `comfypack serve` keep up under concurrent load, and does it scale with workers?

One run, everything on 127.0.0.1, two parts:

``throughput``  16 concurrent clients (``--clients``) send ``--requests`` requests per series
                through the trivial image workflow (``bench/workflows/invert.json``):

                * ``served``: ``comfypack serve`` with ``COMFYPACK_WORKERS=1``, ``POST /generate``
                  (JSON, image as base64), each client its own HTTP connection;
                * ``raw``: a separate headless ComfyUI driven by 16 hand-written clients, each with
                  its own websocket / ``client_id``: ``POST /upload/image`` → ``POST /prompt`` →
                  websocket ``executing`` ``node: null`` → ``GET /history/{id}`` → ``GET /view``
                  (so ComfyUI's own queue holds up to 16 prompts).

                Every request sends a distinct solid colour; each answer must be the inverse of
                ITS OWN input, so an answer handed to the wrong client is caught. After one
                checked warm-up request per client, the timed requests are split into
                ``--rounds`` rounds; each round runs every series once, in an order that rotates,
                so drift on the machine hits them alike. Reported: req/s (requests / summed
                window time), p50/p95 latency (client side, queueing included), served/raw req/s
                (target ≥ 0.9) overall and per round.

``scaling``     the sleep workflow (``tests/workflows/sleep_echo.json``, node set ``tests/nodes``)
                with ``seconds=0.5``: ``--sleep-requests`` requests from 8 concurrent clients to
                ``comfypack serve`` with ``COMFYPACK_WORKERS=1``, then to a second ``comfypack
                serve`` with ``COMFYPACK_WORKERS=2`` (timed once all its workers answer, after a
                warm-up). Each answer's ``text`` must be its own request's. Reported: req/s of
                each, the ratio (target ≥ 1.6) and how the prompts spread over the workers (each
                worker ComfyUI's ``/history``).

Diagnostics, to place a miss (``--diagnose``; not held to a target):

* extra throughput series: ``runner×1`` / ``runner×2`` = comfypack's own WorkerPool +
  WorkflowRunner in this process (no BentoML) on the raw ComfyUI with 1 / 2 prompts in flight
  (with the phases of each request while it holds the worker); ``served-attached×2`` = a
  second ``comfypack serve`` attached twice to the raw ComfyUI (2 prompts in flight);
* from each ComfyUI's ``/history``: how long its prompts executed and the idle gap between
  one prompt's end and the next one's start, i.e. how much of the time ComfyUI was executing;
* CPU seconds per request of each process group (BentoML's processes, the service's ComfyUI,
  the raw ComfyUI, this client) and how busy the whole machine was (``/proc/stat``). When other
  processes use more than half a core, the table says the ratio is measuring contention;
  ``--nice -10`` (as root) runs the benchmark and all it starts ahead of them.

Usage::

    .venv/bin/python bench/serve_load.py [--requests 200] [--json] [--only throughput|scaling]

Exit status: 0 done (1 with ``--strict`` when a target is missed or a request failed), 2 the
benchmark could not run (a server did not start, or an answer was wrong), 130 interrupted.
Everything started is stopped in ``finally``: by process group, then by PID for anything the
service left behind (its ComfyUIs run in sessions of their own).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    ROOT,
    BenchError,
    RawComfyUI,
    RequestFailed,
    Served,
    ServedClient,
    TrivialWorkflow,
    cancel_on_signals,
    comfyui_children,
    descendants,
    error_kinds,
    percentile,
    phase_client,
    setup_logging,
    sigterm_as_interrupt,
    start_served,
    stop_served,
    wait_comfyui_children,
    wait_served,
)

logger = logging.getLogger("bench.serve_load")

INVERT_WORKFLOW = BENCH_DIR / "workflows" / "invert.json"
SLEEP_WORKFLOW = ROOT / "tests" / "workflows" / "sleep_echo.json"
TEST_NODES = ROOT / "tests" / "nodes"


# -- inputs and checks --------------------------------------------------------------------------


def colour_of(i: int) -> tuple[int, int, int]:
    """A distinct RGB colour per request index (an odd multiplier is a bijection mod 2**24)."""
    c = (i * 0x9E3779B1 + 0x5A17C3) & 0xFFFFFF
    return (c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF


def colour_png(i: int, size: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour_of(i)).save(buf, format="PNG")
    return buf.getvalue()


def check_own_inverse(i: int, output: bytes, what: str) -> None:
    """Raise unless every pixel of ``output`` is the inverse of request ``i``'s colour."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        out = np.asarray(Image.open(io.BytesIO(output)).convert("RGB"), dtype=np.int16)
    except (UnidentifiedImageError, OSError) as e:
        raise BenchError(f"{what} #{i}: the answer is not an image ({output[:200]!r})") from e
    want = np.array([255 - v for v in colour_of(i)], dtype=np.int16)
    worst = int(np.abs(out - want).max())
    if worst > 1:
        got = tuple(int(v) for v in out.reshape(-1, 3)[0])
        raise BenchError(
            f"{what} #{i}: answer is not the inverse of its own input (expected "
            f"{tuple(int(v) for v in want)}, got {got}: another request's answer?)"
        )


def check_own_text(i: int, expected: str, output: bytes, what: str) -> None:
    try:
        got = json.loads(output).get("text")
    except (ValueError, AttributeError) as e:
        raise BenchError(f"{what} #{i}: the answer is not a JSON object: {output[:200]!r}") from e
    if got != expected:
        raise BenchError(
            f"{what} #{i}: expected text {expected!r}, got {got!r} (another request's?)"
        )


# -- CPU accounting -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / _TICK, total / _TICK


@dataclass
class CpuMeter:
    """CPU seconds per named group of processes across the timed windows (summed)."""

    groups: Callable[[], dict[str, list[int]]]
    used: dict[str, float] = field(default_factory=dict)
    busy_s: float = 0.0
    total_s: float = 0.0
    _start: tuple[dict[str, dict[int, float]], float, float] | None = None

    def _snap(self) -> dict[str, dict[int, float]]:
        snap = {name: {p: cpu_s(p) for p in pids} for name, pids in self.groups().items()}
        snap["bench client"] = {os.getpid(): sum(os.times()[:2])}
        return snap

    def start(self) -> None:
        busy, total = machine_cpu()
        self._start = (self._snap(), busy, total)

    def stop(self) -> None:
        assert self._start is not None
        before, busy0, total0 = self._start
        after = self._snap()
        busy, total = machine_cpu()
        for name, pids in after.items():
            delta = sum(v - before.get(name, {}).get(p, 0.0) for p, v in pids.items())
            self.used[name] = self.used.get(name, 0.0) + delta
        self.busy_s += busy - busy0
        self.total_s += total - total0
        self._start = None


def served_groups(served: Served) -> Callable[[], dict[str, list[int]]]:
    def groups() -> dict[str, list[int]]:
        comfy = set(comfyui_children(served))
        rest = [served.proc.pid] + [p for p in descendants(served.proc.pid) if p not in comfy]
        return {"service: bentoml": rest, "service: comfyui": sorted(comfy)}

    return groups


# -- the load driver ----------------------------------------------------------------------------


@dataclass
class Load:
    """One timed window: ``n`` requests, their latencies and their answers."""

    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    in_service_ms: list[float] = field(default_factory=list)
    outputs: dict[int, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, other: Load) -> None:
        self.wall_s += other.wall_s
        self.latencies_ms += other.latencies_ms
        self.in_service_ms += other.in_service_ms
        self.outputs.update(other.outputs)
        self.errors += other.errors

    def summary(self) -> dict[str, Any]:
        n = len(self.latencies_ms)
        out: dict[str, Any] = {
            "requests": n,
            "errors": len(self.errors),
            "wall_s": self.wall_s,
            "req_per_s": n / self.wall_s if self.wall_s else 0.0,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p95_ms": percentile(self.latencies_ms, 95),
            "max_ms": max(self.latencies_ms, default=float("nan")),
        }
        if self.in_service_ms:
            out["in_service_p50_ms"] = percentile(self.in_service_ms, 50)
        if self.errors:
            out["error_kinds"] = error_kinds(self.errors)
        return out


Call = Callable[[Any, int], Awaitable[tuple[bytes, Any]]]


async def drive(clients: Sequence[Any], indices: Sequence[int], call: Call, timeout: float) -> Load:
    """Each client sends requests one after another, taking the next index from a shared list,
    until every index has been sent; ``timeout`` bounds the whole window."""
    import aiohttp

    load = Load()
    todo = iter(indices)

    async def client_loop(client: Any) -> None:
        for i in todo:  # one shared iterator: each index is taken once
            t0 = time.perf_counter()
            try:
                output, sample = await call(client, i)
            except (RequestFailed, aiohttp.ClientError, asyncio.TimeoutError) as e:
                load.errors.append(f"{type(e).__name__}: {e}")  # counted, not timed
                continue
            load.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            if sample is not None and "in_service" in sample.parts:
                load.in_service_ms.append(sample.parts["in_service"])
            load.outputs[i] = output

    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(client_loop(c) for c in clients)), timeout)
    except asyncio.TimeoutError as e:
        raise BenchError(f"{len(indices)} requests did not finish within {timeout:g} s") from e
    load.wall_s = time.perf_counter() - t0
    return load


# -- part 1: throughput, served vs raw ---------------------------------------------------------


@dataclass
class Series:
    """One throughput path: its clients, how one request is sent, and what was measured."""

    name: str
    label: str
    clients: list[Any]
    call: Call
    comfyui_url: str
    meter: CpuMeter
    held: bool  # held to the target (served) or its baseline (raw); else a diagnostic
    ids: list[int] = field(default_factory=list)
    load: Load = field(default_factory=Load)
    windows: list[tuple[float, float]] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    timeline: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        st = self.load.summary()
        st.update(
            label=self.label,
            held=self.held,
            comfyui=self.timeline,
            round_req_per_s=self.rounds,
            cpu=cpu_report(self.meter, st["requests"], st["wall_s"]),
        )
        if self.phases:
            keys = dict.fromkeys(k for p in self.phases for k in p)
            st["phases_ms"] = {
                k: {
                    "mean": mean([p[k] for p in self.phases if k in p]),
                    "p50": percentile([p[k] for p in self.phases if k in p], 50),
                }
                for k in keys
            }
        return st


class InProcessPool:
    """Diagnostic: comfypack's own :class:`WorkerPool` + :class:`WorkflowRunner` in this process
    (no BentoML), attached ``inflight`` times to one ComfyUI whose folders are local (as the
    service's own workers are). ``inflight=1`` is the service's design without BentoML;
    ``inflight=2`` lets a second prompt wait in ComfyUI's own queue while one runs."""

    def __init__(
        self, url: str, input_dir: Path, output_dir: Path, inflight: int, timeout: float
    ) -> None:
        self.url, self.input_dir, self.output_dir = url, input_dir, output_dir
        self.inflight = inflight
        self.timeout = timeout
        self.pool: Any = None
        self.runner: Any = None
        self.phases: list[dict[str, float]] = []

    async def __aenter__(self) -> InProcessPool:
        from comfypack.comfyui.pool import WorkerPool
        from comfypack.comfyui.runner import WorkflowRunner
        from comfypack.workflow.interface import load_workflow, parse_interface

        wf = load_workflow(INVERT_WORKFLOW)
        self.runner = WorkflowRunner(wf, parse_interface(wf))
        self.pool = WorkerPool(urls=[self.url] * self.inflight, max_queue=10_000)
        await self.pool.start()
        for w in self.pool.workers:  # the same ComfyUI, with its folders local and phases timed
            await w.client.close()
            w.client = phase_client(self.url, self.input_dir, self.output_dir)
            await w.client.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def run(self, body: dict[str, Any]) -> bytes:
        from comfypack.errors import ComfyPackError

        try:
            request = await self.runner.prepare(body)
            async with self.pool.acquire(timeout=self.timeout) as worker:
                client = worker.client
                client.parts = {}
                t0 = time.perf_counter()
                result = await self.runner.run(client, request, timeout=self.timeout)
                hold = (time.perf_counter() - t0) * 1000.0
        except ComfyPackError as e:
            raise RequestFailed(f"in-process runner: {type(e).__name__}: {e}") from e
        parts = dict(client.parts)
        run_ms = parts.pop("client.run", 0.0)
        parts["wait_ws"] = run_ms - parts.get("prompt", 0.0) - parts.get("history", 0.0)
        parts["rest (build, cleanup)"] = (
            hold - run_ms - parts.get("upload", 0.0) - parts.get("read_file", 0.0)
        )
        parts["worker held"] = hold
        self.phases.append(parts)
        single = result.single_file()
        if single is None:
            raise RequestFailed("in-process runner: the workflow did not produce exactly one file")
        return bytes(single.data)


async def throughput(
    args: argparse.Namespace, served: Served, raw: Any, attached: Served | None
) -> dict[str, Series]:
    """Warm up every path, then time them in interleaved rounds (the order rotates each round)."""
    workflow = TrivialWorkflow.load(INVERT_WORKFLOW)
    c = args.clients
    served_ui = next(iter(comfyui_children(served).values())).url
    raw_pid = raw.pid

    def raw_groups() -> dict[str, list[int]]:
        return {"raw comfyui": [raw_pid, *descendants(raw_pid)]}

    def b64(i: int) -> str:
        return base64.b64encode(pngs[i]).decode("ascii")

    async with contextlib.AsyncExitStack() as stack:
        served_clients = [
            await stack.enter_async_context(
                ServedClient(served.url, "generate", workflow.input_name, b"", args.timeout)
            )
            for _ in range(c)
        ]
        raw_clients = [
            await stack.enter_async_context(RawComfyUI(raw.url, workflow, args.timeout))
            for _ in range(c)
        ]

        async def call_served(client: ServedClient, i: int) -> tuple[bytes, Any]:
            return await client.run_payload({workflow.input_name: b64(i)})

        async def call_raw(client: RawComfyUI, i: int) -> tuple[bytes, Any]:
            return await client.run(pngs[i])

        series = [
            Series(
                "served",
                "invert: served /generate, 1 worker",
                served_clients,
                call_served,
                served_ui,
                CpuMeter(served_groups(served)),
                held=True,
            ),
            Series(
                "raw",
                f"invert: raw ComfyUI, {c} raw clients",
                raw_clients,
                call_raw,
                raw.url,
                CpuMeter(raw_groups),
                held=True,
            ),
        ]
        if attached is not None:
            att_clients = [
                await stack.enter_async_context(
                    ServedClient(attached.url, "generate", workflow.input_name, b"", args.timeout)
                )
                for _ in range(c)
            ]

            def att_groups() -> dict[str, list[int]]:
                assert attached is not None
                return {
                    "service: bentoml": [attached.proc.pid, *descendants(attached.proc.pid)],
                    **raw_groups(),
                }

            series.append(
                Series(
                    "served-attached×2",
                    "diag: served /generate attached twice to the raw "
                    "ComfyUI (2 prompts in flight)",
                    att_clients,
                    call_served,
                    raw.url,
                    CpuMeter(att_groups),
                    held=False,
                )
            )
        for inflight in (k for k in (1, 2) if f"runner{k}" in args.diagnose):
            pool = await stack.enter_async_context(
                InProcessPool(raw.url, raw.input_dir, raw.output_dir, inflight, args.timeout)
            )

            async def call_pool(_: Any, i: int, pool: InProcessPool = pool) -> tuple[bytes, Any]:
                return await pool.run({workflow.input_name: b64(i)}), None

            s = Series(
                f"runner×{inflight}",
                f"diag: comfypack runner in-process, {inflight} in flight, "
                "no BentoML (on the raw ComfyUI)",
                [None] * c,
                call_pool,
                raw.url,
                CpuMeter(raw_groups),
                held=False,
            )
            s.phases = pool.phases
            series.append(s)
        total = c + args.requests  # warm-up (one per client) + timed, per series
        pngs = {i: colour_png(i, args.size) for i in range(len(series) * total)}
        for k, s in enumerate(series):
            s.ids = list(range(k * total, (k + 1) * total))
            warm = await drive(s.clients, s.ids[:c], s.call, args.phase_timeout)
            if warm.errors:
                raise BenchError(f"{s.name}: warm-up answered errors: {error_kinds(warm.errors)}")
            for i, out in warm.outputs.items():
                check_own_inverse(i, out, f"{s.name} (warm-up)")
            logger.info("%s: warm-up of %d requests checked (%.2f s)", s.name, c, warm.wall_s)
            del s.ids[:c]
            s.phases.clear()
        chunks = _split(args.requests, args.rounds)
        for r, chunk in enumerate(chunks):
            order = series[r % len(series) :] + series[: r % len(series)]
            for s in order:
                ids, s.ids = s.ids[: len(chunk)], s.ids[len(chunk) :]
                s.meter.start()
                w0 = time.time()
                load = await drive(s.clients, ids, s.call, args.phase_timeout)
                s.windows.append((w0, time.time()))
                s.meter.stop()
                s.load.add(load)
                s.rounds.append(len(load.latencies_ms) / load.wall_s)
                logger.info(
                    "round %d/%d %s: %d requests in %.2f s (%.1f req/s, %d errors)",
                    r + 1,
                    len(chunks),
                    s.name,
                    len(load.latencies_ms),
                    load.wall_s,
                    s.rounds[-1],
                    len(load.errors),
                )
        timelines = {s.name: await comfyui_timeline(s.comfyui_url, s.windows) for s in series}
    for s in series:
        for i, out in s.load.outputs.items():
            check_own_inverse(i, out, s.name)
        s.timeline = timelines[s.name]
        logger.info(
            "%s: all %d answers are the inverse of their own input", s.name, len(s.load.outputs)
        )
    return {s.name: s for s in series}


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _split(n: int, parts: int) -> list[range]:
    parts = max(1, min(parts, n))
    sizes = [n // parts + (1 if k < n % parts else 0) for k in range(parts)]
    out, start = [], 0
    for s in sizes:
        out.append(range(start, start + s))
        start += s
    return out


async def comfyui_timeline(url: str, windows: list[tuple[float, float]]) -> dict[str, Any]:
    """From ComfyUI's ``/history``: how long its prompts that started inside ``windows`` (wall
    clock, s) executed, and the idle gaps between one prompt's end and the next one's start.
    (ComfyUI's timestamps are whole milliseconds.)"""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(f"{url}/history", params={"max_items": "100000"}) as resp:
            history = await resp.json() if resp.status == 200 else {}
    runs: list[tuple[float, float]] = []
    for entry in history.values():
        stamps = {
            name: data.get("timestamp")
            for name, data in (entry.get("status") or {}).get("messages", [])
        }
        start, end = stamps.get("execution_start"), stamps.get("execution_success")
        if start is not None and end is not None:
            runs.append((start / 1000.0, end / 1000.0))
    runs.sort()
    execs: list[float] = []
    gaps: list[float] = []
    busy = wall = 0.0
    for w0, w1 in windows:
        inside = [r for r in runs if w0 <= r[0] <= w1]
        execs += [(e - s) * 1000.0 for s, e in inside]
        gaps += [(b[0] - a[1]) * 1000.0 for a, b in zip(inside, inside[1:], strict=False)]
        busy += sum(e - s for s, e in inside)
        wall += w1 - w0
    return {
        "prompts": len(execs),
        "exec_mean_ms": mean(execs),
        "exec_p50_ms": percentile(execs, 50),
        "gap_mean_ms": mean(gaps),
        "gap_p50_ms": percentile(gaps, 50),
        "gap_p95_ms": percentile(gaps, 95),
        "executing_frac": busy / wall if wall else float("nan"),
    }


# -- part 2: scaling with workers ------------------------------------------------------------


async def _history_counts(urls: list[str]) -> dict[str, int]:
    import aiohttp

    counts = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for url in urls:
            async with session.get(f"{url}/history", params={"max_items": "100000"}) as resp:
                counts[url] = len(await resp.json()) if resp.status == 200 else -1
    return counts


async def scaling_run(
    args: argparse.Namespace, served: Served, workers: int, meter: CpuMeter
) -> tuple[Load, list[int]]:
    """Warm up every worker, then time ``--sleep-requests`` requests; returns the load and the
    timed prompts each worker ComfyUI ran (from its /history)."""
    urls = [ui.url for ui in comfyui_children(served).values()]
    tag = uuid.uuid4().hex[:8]
    texts = {i: f"w{workers}-{tag}-req{i}" for i in range(args.sleep_requests + 2 * workers)}

    async def call(client: ServedClient, i: int) -> tuple[bytes, Any]:
        seconds = args.sleep_seconds if i >= 2 * workers else 0.01
        return await client.run_payload(
            {"text": texts[i], "seconds": seconds}, what=f"served/{workers}w"
        )

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                ServedClient(served.url, "generate", "text", b"", args.timeout)
            )
            for _ in range(args.sleep_clients)
        ]
        warm = await drive(clients[:workers], list(range(2 * workers)), call, args.phase_timeout)
        if warm.errors:
            raise BenchError(
                f"{workers} worker(s): warm-up answered errors: {error_kinds(warm.errors)}"
            )
        before = await _history_counts(urls)
        meter.start()
        load = await drive(clients, list(range(2 * workers, len(texts))), call, args.phase_timeout)
        meter.stop()
        after = await _history_counts(urls)
    for i, out in load.outputs.items():
        check_own_text(i, texts[i], out, f"{workers} worker(s)")
    share = [after[u] - before[u] for u in urls]
    logger.info(
        "%d worker(s): %d requests in %.2f s (%.2f req/s); prompts per worker %s",
        workers,
        len(load.latencies_ms),
        load.wall_s,
        len(load.latencies_ms) / load.wall_s,
        share,
    )
    return load, share


OTHER_LOAD_WARN = 0.5  # cores used by other processes above which the throughput ratio is flagged

# -- report -------------------------------------------------------------------------------------


def cpu_report(meter: CpuMeter, requests: int, wall_s: float) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    ours = sum(meter.used.values())
    return {
        "cpu_ms_per_request": {k: 1000.0 * v / max(requests, 1) for k, v in meter.used.items()},
        "cpu_cores_used": {k: v / wall_s for k, v in meter.used.items()} if wall_s else {},
        "machine_busy_frac": meter.busy_s / meter.total_s if meter.total_s else float("nan"),
        "other_cores_used": (meter.busy_s - ours) / wall_s if wall_s else float("nan"),
        "cores": cores,
    }


def print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 130))
    table = Table(title="comfypack serve under load")
    for col in (
        "series",
        "requests",
        "clients",
        "req/s",
        "p50 ms",
        "p95 ms",
        "ratio",
        "target",
        "",
    ):
        table.add_column(col, justify="left" if col == "series" else "right")

    def verdict(ok: bool) -> str:
        return "[green]pass[/]" if ok else "[red]MISS[/]"

    tp = result.get("throughput")
    if tp:
        for name, st in tp["series"].items():
            first = name == "served"
            table.add_row(
                st["label"],
                str(st["requests"]),
                str(tp["clients"]),
                f"{st['req_per_s']:.1f}",
                f"{st['p50_ms']:.0f}",
                f"{st['p95_ms']:.0f}",
                f"{tp['ratio']:.2f}×"
                if first
                else (
                    ""
                    if st["held"]
                    else f"{st['req_per_s'] / tp['series']['raw']['req_per_s']:.2f}×"
                ),
                f"≥ {tp['target']}×" if first else "",
                verdict(tp["pass"]) if first else "",
                style=None if st["held"] else "dim",
            )
    sc = result.get("scaling")
    if sc:
        for w in ("1", "2"):
            st = sc["runs"][w]
            two = w == "2"
            table.add_row(
                f"sleep {sc['seconds']:g} s: served, {w} worker(s)",
                str(st["requests"]),
                str(sc["clients"]),
                f"{st['req_per_s']:.2f}",
                f"{st['p50_ms']:.0f}",
                f"{st['p95_ms']:.0f}",
                f"{sc['ratio']:.2f}×" if two else "",
                f"≥ {sc['target']}×" if two else "",
                verdict(sc["pass"]) if two else "",
            )
    con.print(table)
    if tp:
        con.print(
            "served/raw req/s per round: "
            + " ".join(f"{x:.2f}" for x in tp["round_ratios"])
            + f" (median {tp['round_ratio_median']:.2f}); served in-service p50 "
            f"{tp['series']['served'].get('in_service_p50_ms', float('nan')):.0f} ms "
            "(X-ComfyPack-Duration-Ms, queue wait included)"
        )
    if sc:
        con.print(
            f"sleep: prompts per worker with 2 workers {sc['runs']['2'].get('per_worker')}; ideal "
            f"{sc['runs']['1']['ideal_req_per_s']:g} / {sc['runs']['2']['ideal_req_per_s']:g} req/s"
        )

    if tp:
        tl = Table(
            title="invert: what each series' ComfyUI did (its /history; prompts that started in the "
            "timed windows)"
        )
        for col in (
            "series",
            "prompts",
            "exec ms",
            "gap ms",
            "gap p95",
            "ComfyUI executing",
            "req/s per round",
        ):
            tl.add_column(col, justify="left" if col == "series" else "right")
        for name, st in tp["series"].items():
            c = st["comfyui"]
            tl.add_row(
                name,
                str(c["prompts"]),
                f"{c['exec_mean_ms']:.1f}",
                f"{c['gap_mean_ms']:.1f}",
                f"{c['gap_p95_ms']:.1f}",
                f"{100 * c['executing_frac']:.0f}%",
                " ".join(f"{x:.0f}" for x in st["round_req_per_s"]),
            )
        con.print(tl)
        con.print(
            "exec = execution_start → execution_success; gap = one prompt's end → the next one's "
            "start (ComfyUI idle or busy with HTTP)",
            style="dim",
        )
        for name, st in tp["series"].items():
            if st.get("phases_ms"):
                ph = Table(title=f"{name}: phases of one request while it holds the worker (ms)")
                ph.add_column("phase")
                ph.add_column("mean", justify="right")
                ph.add_column("p50", justify="right")
                for k, v in st["phases_ms"].items():
                    ph.add_row(k, f"{v['mean']:.1f}", f"{v['p50']:.1f}")
                con.print(ph)

    cpu = Table(title="CPU during the timed windows (ms of CPU per request; cores busy)")
    for col in ("series", "process group", "CPU ms/req", "cores"):
        cpu.add_column(col, justify="left" if col in ("series", "process group") else "right")
    sections = [(f"invert {k}", v["cpu"]) for k, v in ((tp or {}).get("series") or {}).items()]
    sections += [
        (f"sleep {k} worker(s)", v["cpu"]) for k, v in ((sc or {}).get("runs") or {}).items()
    ]
    for label, rep in sections:
        for group, ms in rep["cpu_ms_per_request"].items():
            cpu.add_row(label, group, f"{ms:.1f}", f"{rep['cpu_cores_used'].get(group, 0):.2f}")
        cpu.add_row(
            label,
            "other processes on the machine",
            "",
            f"{rep['other_cores_used']:.2f}",
            style="dim",
        )
        cpu.add_row(
            label,
            "machine busy",
            "",
            f"{rep['machine_busy_frac'] * rep['cores']:.2f} of {rep['cores']}",
            style="dim",
        )
    con.print(cpu)
    con.print(
        f"load average (1 min) before: {result['load_before']:.2f}, after: "
        f"{result['load_after']:.2f} on {result['cpus']} CPUs; niceness {result['nice']}"
    )
    if tp:
        other = max(st["cpu"]["other_cores_used"] for st in tp["series"].values())
        if other > OTHER_LOAD_WARN:
            con.print(
                f"[yellow]other processes used up to {other:.2f} of {result['cpus']} cores during the "
                "throughput windows: the ratio measures contention as much as comfypack (the "
                "served path waits on a scheduler hop at every step; raw keeps ComfyUI's queue "
                "full). Re-run on a quiet machine, or with --nice -10.[/]"
            )
    errors = [(f"invert {k}", v) for k, v in ((tp or {}).get("series") or {}).items()]
    errors += [(f"sleep {w} worker(s)", v) for w, v in ((sc or {}).get("runs") or {}).items()]
    for label, st in errors:
        for kind, count in (st.get("error_kinds") or {}).items():
            con.print(f"[yellow]{label}: {count}× error (not timed):[/] {kind}")


# -- main -------------------------------------------------------------------------------------


DIAGNOSTICS = ("runner1", "runner2", "attached2")


def _diagnostics(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in DIAGNOSTICS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown diagnostic {unknown}; choose from {', '.join(DIAGNOSTICS)}"
        )
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--requests", type=int, default=200, help="timed requests per throughput path (200)"
    )
    p.add_argument(
        "--clients", type=int, default=16, help="concurrent clients, throughput part (16)"
    )
    p.add_argument(
        "--rounds", type=int, default=8, help="interleaved rounds per throughput series (8)"
    )
    p.add_argument("--size", type=int, default=64, help="input image side in pixels (64)")
    p.add_argument(
        "--sleep-requests", type=int, default=24, help="timed requests per scaling run (24)"
    )
    p.add_argument(
        "--sleep-clients", type=int, default=8, help="concurrent clients, scaling part (8)"
    )
    p.add_argument(
        "--sleep-seconds", type=float, default=0.5, help="the sleep node's seconds (0.5)"
    )
    p.add_argument(
        "--diagnose",
        type=_diagnostics,
        default=list(DIAGNOSTICS),
        metavar="D[,D]",
        help="diagnostic throughput series, not held to the target (default all; '' none): "
        "runner1 / runner2 = comfypack's WorkerPool + WorkflowRunner in this process (no "
        "BentoML) with 1 / 2 prompts in flight on the raw ComfyUI; attached2 = a second "
        "`comfypack serve` attached twice to the raw ComfyUI (COMFYPACK_COMFYUI_URL=u,u)",
    )
    p.add_argument("--only", choices=("throughput", "scaling"), default=None, help="run one part")
    p.add_argument(
        "--target-throughput", type=float, default=0.9, help="served/raw req/s target (0.9)"
    )
    p.add_argument(
        "--target-scaling", type=float, default=1.6, help="2-worker/1-worker target (1.6)"
    )
    p.add_argument(
        "--comfyui",
        type=Path,
        default=None,
        help="ComfyUI tree (default: comfypack.config.default_comfyui_dir())",
    )
    p.add_argument(
        "--startup-timeout", type=float, default=300.0, help="seconds to wait for each server"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    p.add_argument(
        "--phase-timeout", type=float, default=600.0, help="seconds one timed window may take"
    )
    p.add_argument("--log-dir", type=Path, default=None, help="keep the services' logs here")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run this benchmark and everything it starts at this niceness (e.g. -10, as "
        "root, to measure on a machine others are loading; default 0)",
    )
    p.add_argument(
        "--json", action="store_true", help="also print the numbers as JSON (stdout, last)"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if min(args.requests, args.clients, args.rounds, args.sleep_requests, args.sleep_clients) < 1:
        p.error("counts must be ≥ 1")
    return args


def _serve_env(workers: int, extra_nodes: bool) -> dict[str, str]:
    env = {
        "COMFYPACK_WORKERS": str(workers),
        "COMFYPACK_MAX_QUEUE": "64",
        "COMFYPACK_COMFYUI_URL": "",
    }  # start own workers, whatever this shell has set
    if extra_nodes:
        dirs = [d for d in os.environ.get("COMFYPACK_EXTRA_NODES_DIRS", "").split(os.pathsep) if d]
        env["COMFYPACK_EXTRA_NODES_DIRS"] = os.pathsep.join([*dirs, str(TEST_NODES)])
    return env


def _keep_log(args: argparse.Namespace, served: Served, name: str) -> None:
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            (args.log_dir / f"{name}.log").write_bytes(served.log.read_bytes())


def run_throughput(args: argparse.Namespace, comfyui_dir: Path, tmp: Path) -> dict[str, Any]:
    from comfypack.comfyui.process import ComfyUIProcess

    served: Served | None = None
    attached: Served | None = None
    raw: ComfyUIProcess | None = None
    try:
        served = start_served(INVERT_WORKFLOW, comfyui_dir, tmp, _serve_env(1, extra_nodes=False))
        raw = ComfyUIProcess(comfyui_dir, startup_timeout=args.startup_timeout)
        raw.start()
        logger.info("raw ComfyUI: pid %s on %s", raw.pid, raw.url)
        raw.wait_ready()
        if "attached2" in args.diagnose:
            attached = start_served(
                INVERT_WORKFLOW,
                comfyui_dir,
                tmp,
                {
                    **_serve_env(2, extra_nodes=False),
                    "COMFYPACK_COMFYUI_URL": f"{raw.url},{raw.url}",
                },
            )
            wait_served(attached, args.startup_timeout)
        wait_served(served, args.startup_timeout)
        wait_comfyui_children(served, 1, args.startup_timeout)
        logger.info(
            "throughput: %d clients, %d timed requests per series in %d round(s)",
            args.clients,
            args.requests,
            args.rounds,
        )
        series = asyncio.run(cancel_on_signals(throughput(args, served, raw, attached)))
    finally:
        if attached is not None:
            stop_served(attached)
            _keep_log(args, attached, "serve-invert-attached2")
        if served is not None:
            stop_served(served)
            _keep_log(args, served, "serve-invert-1w")
        if raw is not None:
            raw.stop()
    st = {name: s.report() for name, s in series.items()}
    ratio = st["served"]["req_per_s"] / st["raw"]["req_per_s"]
    # each served round against the raw round of the same round (run next to it)
    paired = [a / b for a, b in zip(series["served"].rounds, series["raw"].rounds, strict=True)]
    return {
        "clients": args.clients,
        "rounds": args.rounds,
        "image_px": args.size,
        "series": st,
        "ratio": ratio,
        "round_ratios": paired,
        "round_ratio_median": percentile(paired, 50),
        "target": args.target_throughput,
        "pass": ratio >= args.target_throughput and not st["served"]["errors"],
    }


def run_scaling(args: argparse.Namespace, comfyui_dir: Path, tmp: Path) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for workers in (1, 2):
        served: Served | None = None
        try:
            served = start_served(
                SLEEP_WORKFLOW, comfyui_dir, tmp, _serve_env(workers, extra_nodes=True)
            )
            wait_served(served, args.startup_timeout)
            wait_comfyui_children(served, workers, args.startup_timeout)
            meter = CpuMeter(served_groups(served))
            load, share = asyncio.run(cancel_on_signals(scaling_run(args, served, workers, meter)))
        finally:
            if served is not None:
                stop_served(served)
                _keep_log(args, served, f"serve-sleep-{workers}w")
        st = load.summary()
        st["per_worker"] = share
        st["ideal_req_per_s"] = workers / args.sleep_seconds
        st["cpu"] = cpu_report(meter, st["requests"], st["wall_s"])
        runs[str(workers)] = st
    ratio = runs["2"]["req_per_s"] / runs["1"]["req_per_s"]
    return {
        "seconds": args.sleep_seconds,
        "clients": args.sleep_clients,
        "runs": runs,
        "ratio": ratio,
        "target": args.target_scaling,
        "pass": ratio >= args.target_scaling and not any(r["errors"] for r in runs.values()),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    from comfypack.config import default_comfyui_dir

    comfyui_dir = (args.comfyui or default_comfyui_dir()).resolve()
    if args.nice:
        try:
            os.setpriority(
                os.PRIO_PROCESS, 0, args.nice
            )  # inherited by every process started below
        except OSError as e:
            logger.error("cannot set niceness %d: %s", args.nice, e)
            return 2
    result: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
    }
    with tempfile.TemporaryDirectory(prefix="comfypack-bench-") as tmp, sigterm_as_interrupt():
        try:
            if args.only in (None, "throughput"):
                result["throughput"] = run_throughput(args, comfyui_dir, Path(tmp))
            if args.only in (None, "scaling"):
                result["scaling"] = run_scaling(args, comfyui_dir, Path(tmp))
        except BenchError as e:
            logger.error("%s", e)
            return 2
        except (KeyboardInterrupt, asyncio.CancelledError):
            logger.error("interrupted; stopped what was started")
            return 130
    result["load_after"] = os.getloadavg()[0]
    result["pass"] = all(result[k]["pass"] for k in ("throughput", "scaling") if k in result)
    print_tables(result)
    if args.json:
        print(json.dumps(result, indent=2))
    return 1 if args.strict and not result["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
