"""Local comfypack services started from the canvas (``POST /comfypack/serve``).

Each service is ``comfypack serve <workflow> --port <free port> --comfyui-url <this ComfyUI>``
run as a child process that leads its own process group (``bentoml serve`` and its workers
stay in it) and gets ``PR_SET_PDEATHSIG``, so it dies with ComfyUI even when ComfyUI is
killed. There is one service per workflow (its canonical JSON's sha256). Stopping one sends
SIGTERM to the group, then SIGKILL after a grace period, and checks that nothing of the group
is left. ComfyUI's exit stops them all (``atexit``).

The service binds where ComfyUI was reached: 127.0.0.1 for a loopback ComfyUI, else the same
interface address (exposed exactly as much as ComfyUI itself is).

A watcher polls the service's ``/livez`` and ``/readyz`` (on the event loop, with aiohttp) so
the status the browser polls says what is really happening: the process is starting, the
HTTP server is up and waits for its ComfyUI worker, ready, or failed (with the log's tail).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import ctypes
import functools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Service", "Services", "free_port", "group_members"]

logger = logging.getLogger("comfypack.routes")

STAGES = [
    "starting the process",
    "starting the HTTP server",
    "waiting for the ComfyUI worker",
    "ready",
]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``pgid`` (``/proc``; where there
    is none, whether the group exists at all)."""
    try:
        entries = os.listdir("/proc")
    except FileNotFoundError:  # macOS: no /proc
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    found = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ... ; comm may hold spaces and parentheses
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 2 and rest[0] != "Z" and int(rest[2]) == pgid:
            found.append(int(entry))
    return found


def _prctl() -> Any:
    """libc's prctl, looked up in the parent (the child only calls it: no loading after fork)."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the atexit stop still applies


def _child_setup(prctl: Any, parent: int) -> None:  # runs in the child before exec
    if prctl is not None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with ComfyUI
        if os.getppid() != parent:  # ComfyUI died before that took effect
            os._exit(1)


@dataclass
class Service:
    id: str
    name: str
    workflow_sha256: str
    workflow_path: Path
    host: str  # what it binds
    public_host: str  # how the browser reaches this machine
    port: int
    endpoint: str
    proc: subprocess.Popen[bytes]
    state: str = "starting"  # starting | ready | failed | stopping | stopped
    stage_index: int = 0
    error: str | None = None
    started: float = field(default_factory=time.time)
    ready_at: float | None = None
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=300))

    @property
    def url(self) -> str:
        host = f"[{self.public_host}]" if ":" in self.public_host else self.public_host
        return f"http://{host}:{self.port}"

    @property
    def local_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def to_dict(self, *, log_lines: int = 40) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "workflow_sha256": self.workflow_sha256,
            "state": self.state,
            "stage": STAGES[self.stage_index],
            "stage_index": self.stage_index,
            "stages": STAGES,
            "progress": 1.0
            if self.state == "ready"
            else round(self.stage_index / (len(STAGES) - 1), 4),
            "pid": self.proc.pid,
            "returncode": self.proc.poll(),
            "port": self.port,
            "url": self.url,
            "endpoint_url": f"{self.url}/{self.endpoint}",
            "docs_url": f"{self.url}/docs",
            "elapsed_s": round((self.ready_at or time.time()) - self.started, 2),
            "error": self.error,
            "log": list(self.log)[-log_lines:] if log_lines else [],
        }


class Services:
    """The services this ComfyUI started. ``command``: how to run the comfypack CLI."""

    def __init__(
        self,
        base_dir: Path,
        *,
        command: list[str] | None = None,
        max_services: int = 4,
        startup_timeout: float = 180.0,
        grace: float = 10.0,
    ) -> None:
        self.base_dir = base_dir
        self.command = command or [sys.executable, "-m", "comfypack.cli"]
        self.max_services = max_services
        self.startup_timeout = startup_timeout
        self.grace = grace
        self._services: dict[str, Service] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        atexit.register(self.stop_all)

    def get(self, service_id: str) -> Service | None:
        return self._services.get(service_id)

    def all(self) -> list[Service]:
        return list(self._services.values())

    def running(self) -> list[Service]:
        return [s for s in self._services.values() if s.proc.poll() is None]

    def start(
        self,
        *,
        service_id: str,
        name: str,
        workflow_sha256: str,
        workflow_json: str,
        comfyui_url: str,
        host: str,
        public_host: str,
        endpoint: str = "generate",
    ) -> Service:
        """Launch the service (returns at once; the watcher follows it). Call it on the event
        loop's thread: PR_SET_PDEATHSIG is tied to the thread that forks."""
        folder = self.base_dir / "serve" / service_id
        workflow_path = folder / _slug(name) / "workflow_api.json"  # the folder names it in /docs
        workflow_path.parent.mkdir(parents=True, exist_ok=True)
        workflow_path.write_text(workflow_json, encoding="utf-8")
        port = free_port(host)
        # its own state folder (BentoML's task database, which `bentoml serve` recreates at
        # start, metrics, v2 assets) next to its workflow: never another service's
        cmd = [
            *self.command,
            "serve",
            str(workflow_path),
            "--host",
            host,
            "--port",
            str(port),
            "--comfyui-url",
            comfyui_url,
            "--endpoint",
            endpoint,
            "--state-dir",
            str(folder / "state"),
        ]
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "COMFYPACK_SERVICE_NAME": _service_name(name),
            "BENTOML_DO_NOT_TRACK": "True",
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
        setup = functools.partial(_child_setup, _prctl(), os.getpid())
        proc = subprocess.Popen(
            cmd,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=setup,
        )
        service = Service(
            id=service_id,
            name=name,
            workflow_sha256=workflow_sha256,
            workflow_path=workflow_path,
            host=host,
            public_host=public_host,
            port=port,
            endpoint=endpoint,
            proc=proc,
        )
        service.log.append(
            f"$ comfypack serve {workflow_path.name} --port {port} --comfyui-url {comfyui_url}"
        )
        self._services[service_id] = service
        threading.Thread(
            target=_pump,
            args=(proc, service.log),
            daemon=True,
            name=f"comfypack-serve-{service_id}",
        ).start()
        task = asyncio.get_running_loop().create_task(self._watch(service))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        logger.info("comfypack: serving %s at %s (pid %d)", name, service.local_url, proc.pid)
        return service

    async def _watch(self, service: Service) -> None:
        import aiohttp

        deadline = service.started + self.startup_timeout
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while service.state == "starting":
                if service.proc.poll() is not None:
                    service.state = "failed"
                    service.error = (
                        f"the service exited with code {service.proc.returncode} before it "
                        "was ready; see its log"
                    )
                    return
                if time.time() > deadline:
                    service.error = (
                        f"the service was not ready after {self.startup_timeout:.0f} s; stopped it"
                    )
                    await self.stop(service.id)
                    service.state = "failed"
                    return
                for path, stage in (("/livez", 2), ("/readyz", 3)):
                    try:
                        async with session.get(service.local_url + path) as r:
                            if r.status != 200:
                                break
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                        break
                    service.stage_index = max(service.stage_index, stage)
                else:
                    service.state = "ready"
                    service.ready_at = time.time()
                    return
                if service.stage_index == 0:
                    service.stage_index = 1  # the process runs; its HTTP server does not answer yet
                await asyncio.sleep(0.3)

    async def stop(self, service_id: str) -> dict[str, Any]:
        """SIGTERM the service's process group; SIGKILL what is left after the grace period."""
        service = self._services[service_id]
        killed = False
        if service.state not in ("stopped",):
            service.state = "stopping"
            pgid = service.proc.pid
            _signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            while time.monotonic() < deadline and (
                service.proc.poll() is None or group_members(pgid)
            ):
                await asyncio.sleep(0.1)
            if service.proc.poll() is None or group_members(pgid):
                killed = True
                _signal_group(pgid, signal.SIGKILL)
                end = time.monotonic() + 5
                while time.monotonic() < end and (
                    service.proc.poll() is None or group_members(pgid)
                ):
                    await asyncio.sleep(0.05)
            service.state = "stopped"
        left = group_members(service.proc.pid)
        return {
            "id": service.id,
            "state": service.state,
            "returncode": service.proc.poll(),
            "killed": killed,
            "left": left,
        }

    def forget(self, service_id: str) -> None:
        self._services.pop(service_id, None)

    def stop_all(self) -> None:
        """Stop every service now, synchronously (ComfyUI is exiting)."""
        live = [s for s in self._services.values() if s.state != "stopped"]
        for s in live:
            _signal_group(s.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + min(self.grace, 5.0)
        while time.monotonic() < deadline and any(group_members(s.proc.pid) for s in live):
            time.sleep(0.1)
        for s in live:
            if group_members(s.proc.pid):
                _signal_group(s.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                s.proc.wait(2)
            s.state = "stopped"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pump(proc: subprocess.Popen[bytes], log: collections.deque[str]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()
        if line:
            log.append(line[:2000])
    with contextlib.suppress(Exception):
        proc.wait(5)  # reap it


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:64] or "workflow"


def _service_name(name: str) -> str:
    """A BentoML-friendly service name from the workflow's name."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return cleaned[:40] or "comfypack"
