"""Run one headless ComfyUI as a child process (a *worker*).

The process binds 127.0.0.1 on a free port, loads comfypack's node package through a generated
``extra_model_paths.yaml`` (``custom_nodes:``), gets its own input/output/temp dirs, dies with its
parent (``PR_SET_PDEATHSIG`` on Linux), and is stopped with SIGTERM then SIGKILL of its whole
process group, so no orphan survives.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

from ..errors import ComfyUIUnavailable, ProvisionError

__all__ = [
    "ComfyUIProcess",
    "free_port",
    "node_package_dir",
    "node_package_copies",
    "has_gpu",
    "gpu_count",
    "gpu_ids",
]

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def node_package_dir() -> Path:
    """The folder holding ``comfypack_nodes`` (set ``COMFYPACK_NODES_DIR`` to override)."""
    from ..config import nodes_dir_override

    override = nodes_dir_override()
    candidates = [override] if override is not None else []
    here = Path(__file__).resolve()
    candidates += [here.parents[2] / "custom_nodes", here.parents[1] / "_custom_nodes"]
    for c in candidates:
        if (c / "comfypack_nodes" / "__init__.py").is_file():
            return c
    raise ProvisionError(
        "cannot find comfypack's node package (custom_nodes/comfypack_nodes); set "
        "COMFYPACK_NODES_DIR to the folder that contains it"
    )


#: the node pack's name on the Comfy Registry (its pyproject.toml): a registry or ComfyUI-Manager
#: install puts it under this name, not ``comfypack_nodes``
REGISTRY_NAME = "comfypack-nodes"


def node_package_copies(custom_nodes: Path) -> list[Path]:
    """The copies of comfypack's node package in a ``custom_nodes`` folder: ``comfypack_nodes``
    (a link or a copy), and any folder whose ``pyproject.toml`` names the registry package
    ``comfypack-nodes`` (what ``comfy node install`` / ComfyUI-Manager create)."""
    found: list[Path] = []
    if not custom_nodes.is_dir():
        return found
    for entry in sorted(custom_nodes.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if entry.name == "comfypack_nodes":
            found.append(entry)
            continue
        if _project_name(entry / "pyproject.toml") == REGISTRY_NAME:
            found.append(entry)
    return found


def _project_name(pyproject: Path) -> str | None:
    """``[project] name`` of a pyproject.toml (None: no file, or no name)."""
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # 3.10: the one line we need
        m = re.search(r"(?ms)^\[project\]\s*$.*?^\s*name\s*=\s*[\"']([^\"']+)[\"']", text)
        return m.group(1) if m else None
    try:
        project = tomllib.loads(text).get("project")
    except ValueError:
        return None
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) else None


def has_gpu() -> bool:
    """Whether an NVIDIA GPU is visible (cheap check, no torch import)."""
    return gpu_count() > 0


def gpu_count() -> int:
    """How many NVIDIA GPUs this process may use (``CUDA_VISIBLE_DEVICES`` respected; no torch)."""
    return len(gpu_ids())


def gpu_ids() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries for a child that should
    use one of them: the entries of this process's ``CUDA_VISIBLE_DEVICES`` (indexes or UUIDs, up
    to the first ``-1`` or empty one, as CUDA reads it), else ``0…n-1`` for the ``/dev/nvidiaN``
    devices (a container sees its own GPUs numbered from 0)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for entry in (d.strip() for d in visible.split(",")):
            if not entry or entry == "-1":
                break
            ids.append(entry)
        return ids
    return [str(i) for i in range(len(list(Path("/dev").glob("nvidia[0-9]*"))))]


def _pdeathsig() -> None:  # runs in the child before exec
    os.setsid()
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ComfyUIProcess:
    """One headless ComfyUI.

    ``comfyui_dir``: a ComfyUI source tree (with ``main.py``). ``python``: the interpreter that
    runs it (default: this one). ``workdir``: where its input/output/temp/user dirs go (default: a
    fresh temp dir, removed on :meth:`stop`). ``env``: extra environment (e.g.
    ``CUDA_VISIBLE_DEVICES`` to pin a GPU).

    The child gets ``PR_SET_PDEATHSIG``, which Linux ties to the *thread* that forked it: call
    :meth:`start` / :meth:`restart` from a long-lived thread (the main / event-loop thread), not
    from a short-lived worker thread. ``metadata``: let ComfyUI embed the workflow in
    the files it saves (off by default: API clients should not receive the graph).
    """

    def __init__(
        self,
        comfyui_dir: str | Path,
        *,
        python: str | None = None,
        port: int | None = None,
        cpu: bool | None = None,
        workdir: str | Path | None = None,
        extra_args: list[str] | None = None,
        log_lines: int = 400,
        metadata: bool = False,
        env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.comfyui_dir = Path(comfyui_dir).resolve()
        if not (self.comfyui_dir / "main.py").is_file():
            raise ProvisionError(
                f"{self.comfyui_dir} is not a ComfyUI tree (no main.py); run `comfypack comfyui "
                "install` or pass --comfyui DIR"
            )
        self.python = python or sys.executable
        self.port = port
        self.cpu = (not has_gpu()) if cpu is None else cpu
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self.extra_args = list(extra_args or [])
        self.metadata = metadata
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: deque[str] = deque(maxlen=log_lines)
        self._log_thread: threading.Thread | None = None
        self._node_args: list[str] = []

    # -- paths ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def input_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "input"

    @property
    def output_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "output"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_tail(self) -> str:
        return "".join(self._log)

    def is_running(self) -> bool:
        """Whether the process is alive *now*. ``Popen.poll`` cannot tell while another thread
        blocks in ``wait`` (the pool's watcher holds its lock): ask the kernel without reaping."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return False
        try:
            exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already (by the pool's watcher): it is gone
            return False
        return exited is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    # -- lifecycle ------------------------------------------------------------------------------

    def command(self) -> list[str]:
        assert self.workdir is not None
        cmd = [
            self.python,
            "-u",
            str(self.comfyui_dir / "main.py"),
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--input-directory",
            str(self.input_dir),
            "--output-directory",
            str(self.output_dir),
            "--temp-directory",
            str(self.workdir / "temp"),
            "--user-directory",
            str(self.workdir / "user"),
            "--extra-model-paths-config",
            str(self.workdir / "comfypack_extra_paths.yaml"),
            "--database-url",
            "sqlite:///:memory:",
            *self._node_args,
        ]
        if self.cpu:
            cmd.append("--cpu")
        if not self.metadata:
            cmd.append("--disable-metadata")  # served outputs must not carry the whole workflow
        return cmd + self.extra_args

    def start(self) -> None:
        """Launch the process (returns at once; see :meth:`wait_ready`)."""
        if self.is_running():
            return
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="comfypack-worker-"))
        for sub in ("input", "output", "temp", "user"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        node_dirs, self._node_args = self._node_setup()
        custom_nodes = "|\n" + "".join(f"    {d}\n" for d in node_dirs)
        (self.workdir / "comfypack_extra_paths.yaml").write_text(
            f"comfypack:\n  base_path: {self.comfyui_dir}\n  custom_nodes: {custom_nodes}"
        )
        if self.port is None:
            self.port = free_port()
        env = {**os.environ, **self.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        logger.info("starting ComfyUI on %s (%s)", self.url, "cpu" if self.cpu else "gpu")
        self._log.clear()
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.comfyui_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_pdeathsig,
        )
        self._log_thread = threading.Thread(target=self._pump, args=(self._proc,), daemon=True)
        self._log_thread.start()

    def _node_setup(self) -> tuple[list[str], list[str]]:
        """The node folders to add, and the ComfyUI flags that make *this* comfypack's node package
        the one that loads.

        ComfyUI loads every ``comfypack_nodes`` it finds; with two copies the routes of the first
        and the node classes of the last win. A tree whose ``custom_nodes/comfypack_nodes`` is
        this package (a link) needs nothing added; a *different* copy (another comfypack version)
        is skipped: this package is exposed under another folder name and every other custom node
        is allow-listed by name (``--disable-all-custom-nodes --whitelist-custom-nodes``).
        """
        assert self.workdir is not None
        own = node_package_dir()
        from ..config import extra_nodes_dirs

        extra = [str(d) for d in extra_nodes_dirs()]
        tree_nodes = self.comfyui_dir / "custom_nodes"
        copies = node_package_copies(tree_nodes)
        if not copies:
            return [str(own), *extra], []
        if (
            copies == [tree_nodes / "comfypack_nodes"]
            and copies[0].resolve() == (own / "comfypack_nodes").resolve()
        ):
            return extra, []  # the tree loads this very package already
        for copy in copies:
            if copy.resolve() != (own / "comfypack_nodes").resolve():
                logger.warning(
                    "%s is a different copy of comfypack's node package; this worker skips it "
                    "and loads %s",
                    copy,
                    own / "comfypack_nodes",
                )
        exposed = self.workdir / "nodes"
        exposed.mkdir(exist_ok=True)
        link = exposed / "comfypack_nodes_active"
        if not link.is_symlink():
            link.symlink_to(own / "comfypack_nodes", target_is_directory=True)
        names = {"comfypack_nodes_active"}
        skipped = {c.name for c in copies} | {"comfypack_nodes"}
        for folder in [tree_nodes, *map(Path, extra)]:
            with contextlib.suppress(OSError):
                names.update(e.name for e in folder.iterdir() if e.name not in skipped)
        return [str(exposed), *extra], [
            "--disable-all-custom-nodes",
            "--whitelist-custom-nodes",
            *sorted(names),
        ]

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            self._log.append(line)
            logger.debug("comfyui[%s]: %s", proc.pid, line.rstrip())

    def answers(self, timeout: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/system_stats", timeout=timeout) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until ComfyUI answers HTTP; raise if it exits or takes too long."""
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        delay = 0.1
        while time.monotonic() < deadline:
            if not self.is_running():
                raise ComfyUIUnavailable(
                    f"ComfyUI exited during start-up (code {self.returncode}); last log lines:\n"
                    + "".join(list(self._log)[-30:])
                )
            if self.answers():
                logger.info("ComfyUI ready on %s (pid %s)", self.url, self.pid)
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        self.stop()
        raise ComfyUIUnavailable(
            f"ComfyUI did not answer within {timeout or self.startup_timeout:g} s; last log lines:\n"
            + "".join(list(self._log)[-30:])
        )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL after ``grace`` seconds; remove a temp workdir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc is not None:
            # the group may hold children of ComfyUI's; make sure none remain
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log_thread is not None:
            self._log_thread.join(timeout=2)
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def restart(self) -> None:
        keep = self.workdir
        own = self._own_workdir
        self._own_workdir = False
        self.stop()
        self._own_workdir = own
        self.workdir = keep
        self.start()

    def __enter__(self) -> ComfyUIProcess:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
