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
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_WORKFLOW,
    BenchError,
    ComfyUIEndpoint,
    RawComfyUI,
    RequestFailed,
    Sample,
    Served,
    ServedClient,
    TrivialWorkflow,
    cancel_on_signals,
    check_inverted,
    make_png,
    phase_client,
    served_comfyui,
    setup_logging,
    sigterm_as_interrupt,
    start_served,
    stop_served,
    summarize,
    wait_served,
)
from _common import error_kinds as _error_kinds
from _common import key_value as _key_value

logger = logging.getLogger("bench.serve_overhead")


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

    def __init__(
        self,
        workflow_path: Path,
        comfyui: ComfyUIEndpoint,
        field_name: str,
        png: bytes,
        timeout: float,
    ) -> None:
        self.workflow_path = workflow_path
        self.raw = comfyui
        self.body = {field_name: base64.b64encode(png).decode("ascii")}
        self.timeout = timeout
        self.client: Any = None
        self.runner: Any = None

    async def __aenter__(self) -> RunnerInProcess:
        from comfypack.comfyui.runner import WorkflowRunner
        from comfypack.workflow.interface import load_workflow, parse_interface

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
        self.client = phase_client(self.raw.url, self.raw.input_dir, self.raw.output_dir)
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
            raise RequestFailed(
                f"runner ({self.raw.url}): the workflow did not produce exactly one file"
            )
        run_ms = parts.pop("client.run", 0.0)
        out = {
            "prepare": (t1 - t0) * 1000.0,
            **parts,
            "wait_ws": run_ms - parts.get("prompt", 0.0) - parts.get("history", 0.0),
        }
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


async def measure(
    args: argparse.Namespace,
    workflow: TrivialWorkflow,
    served_url: str,
    served_ui: ComfyUIEndpoint | None,
    raw_proc: Any,
    png: bytes,
    broken: dict[str, str],
    errors: dict[str, list[str]],
) -> dict[str, list[Sample]]:
    """Time every series. An optional series whose output is wrong goes into ``broken``; error
    answers go into ``errors`` (by series) and are not timed."""
    async with contextlib.AsyncExitStack() as stack:
        served = await stack.enter_async_context(
            ServedClient(served_url, args.endpoint, workflow.input_name, png, args.timeout)
        )
        raw = await stack.enter_async_context(RawComfyUI(raw_proc.url, workflow, args.timeout))
        series: dict[str, Any] = {"served/json": served.run_json}
        if args.multipart:
            series["served/multipart"] = served.run_multipart
        series["raw"] = lambda: raw.run(png)
        if args.profile:
            targets = {
                "runner@raw": ComfyUIEndpoint(raw_proc.url, raw_proc.input_dir, raw_proc.output_dir)
            }
            if served_ui is not None:
                targets["runner@served"] = served_ui
            else:
                logger.warning("cannot find the service's ComfyUI; no runner@served series")
            for name, target in targets.items():
                runner = await stack.enter_async_context(
                    RunnerInProcess(args.workflow, target, workflow.input_name, png, args.timeout)
                )
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
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
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


def report(
    args: argparse.Namespace,
    samples: dict[str, list[Sample]],
    broken: dict[str, str],
    errors: dict[str, list[str]],
) -> dict[str, Any]:
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
        ratios[name] = {
            "p50": r50,
            "p95": r95,
            "pass": r50 <= args.target and r95 <= args.target,
            "held_to_target": name in TIMED_SERIES,
        }
    return {
        "n": args.n,
        "warmup": args.warmup,
        "image_px": args.size,
        "target_ratio": args.target,
        "workflow": str(args.workflow),
        "series": series,
        "parts": parts,
        "ratios": ratios,
        "broken": broken,
        "errors": {
            name: {"count": len(msgs), "kinds": _error_kinds(msgs)} for name, msgs in errors.items()
        },
        "load_avg_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        # a served path that answers errors fails, however fast its other answers are
        "pass": all(r["pass"] for r in ratios.values() if r["held_to_target"])
        and not any(name in errors for name in TIMED_SERIES),
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 110))
    table = Table(
        title=f"serve overhead: {Path(result['workflow']).name}, {result['image_px']}×"
        f"{result['image_px']} PNG, n={result['n']} (warm-up {result['warmup']})"
    )
    for col in (
        "series",
        "p50 ms",
        "p95 ms",
        "mean ms",
        "min ms",
        "p50 ×raw",
        "p95 ×raw",
        f"≤ {result['target_ratio']}×",
    ):
        table.add_column(col, justify="left" if col == "series" else "right")
    for name, st in result["series"].items():
        r = result["ratios"].get(name)
        verdict = (
            ""
            if r is None or not r["held_to_target"]
            else ("[green]pass[/]" if r["pass"] else "[red]FAIL[/]")
        )
        table.add_row(
            name,
            f"{st['p50_ms']:.1f}",
            f"{st['p95_ms']:.1f}",
            f"{st['mean_ms']:.1f}",
            f"{st['min_ms']:.1f}",
            "" if r is None else f"{r['p50']:.2f}",
            "" if r is None else f"{r['p95']:.2f}",
            verdict,
        )
        for part, pst in result["parts"].get(name, {}).items():
            table.add_row(
                f"  · {part}",
                f"{pst['p50_ms']:.1f}",
                f"{pst['p95_ms']:.1f}",
                f"{pst['mean_ms']:.1f}",
                f"{pst['min_ms']:.1f}",
                "",
                "",
                "",
                style="dim",
            )
    con.print(table)
    con.print(
        f"load average (1 min) at the end: {result['load_avg_1m']:.2f} on {result['cpus']} CPUs; "
        "runner@… rows are diagnostic (comfypack's runner in this process, on the raw ComfyUI "
        "or on the service's), not held to the target"
    )
    for name, err in result["errors"].items():
        con.print(f"[yellow]{name}: {err['count']} error answer(s) (not timed)[/]")
        for kind, count in err["kinds"].items():
            con.print(f"  {count}× {kind}", markup=False)
    for name, why in result["broken"].items():
        con.print(f"[red]{name}: broken, not timed[/]: {why}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=200, help="timed requests per series (default 200)")
    p.add_argument(
        "--warmup", type=int, default=20, help="untimed requests per series first (default 20)"
    )
    p.add_argument(
        "--workflow",
        type=Path,
        default=DEFAULT_WORKFLOW,
        help="API workflow: one ComfyPackInputImage → … → one ComfyPackOutputImage whose "
        "output is the input inverted (default: bench/workflows/invert.json)",
    )
    p.add_argument(
        "--comfyui",
        type=Path,
        default=None,
        help="ComfyUI tree (default: comfypack.config.default_comfyui_dir())",
    )
    p.add_argument("--size", type=int, default=64, help="input image side in pixels (default 64)")
    p.add_argument("--endpoint", default="generate")
    p.add_argument(
        "--no-multipart",
        dest="multipart",
        action="store_false",
        help="skip the served multipart-upload series",
    )
    p.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the diagnostic runner@raw / runner@served series (comfypack's runner in "
        "this process against either ComfyUI, with its phases)",
    )
    p.add_argument(
        "--target", type=float, default=1.3, help="pass when served/raw p50 and p95 ≤ this"
    )
    p.add_argument(
        "--startup-timeout", type=float, default=300.0, help="seconds to wait for each server"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one request may take")
    p.add_argument(
        "--serve-env",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="extra environment for `comfypack serve` (repeatable), e.g. "
        "BENTOML_CONFIG_OPTIONS=... to try BentoML settings",
    )
    p.add_argument(
        "--serve-log", type=Path, default=None, help="keep the service's log in this file"
    )
    p.add_argument(
        "--json", action="store_true", help="also print the numbers as JSON (on stdout, last)"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when the ratio misses --target")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.n < 1 or args.warmup < 0:
        p.error("--n must be ≥ 1 and --warmup ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
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
            samples = asyncio.run(
                cancel_on_signals(
                    measure(
                        args, workflow, served.url, served_comfyui(served), raw, png, broken, errors
                    )
                )
            )
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
