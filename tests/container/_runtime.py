"""Run a buildah-built image the way a cluster runs it, on a host with no container engine daemon.

Debian's podman (4.3) does not start containers on these VMs (crun refuses the host's
RLIMIT_NPROC and its hybrid cgroup layout) and ``buildah run`` has no read-only root, so this runs
the image's own configuration — entrypoint, user, working dir and environment, read with
``buildah inspect`` — in a chroot of the mounted image, in new mount and PID namespaces
(``unshare``), the host's network: the image's root file system bind-mounted read-only, its
declared volumes given as bind mounts (the model cache) or fresh tmpfs (``emptyDir``), the user
its ``USER`` (non-root). Kept between starts: the working container (so a restart does not copy
the image again) and whatever the caller mounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILDAH = ["buildah", "--storage-driver", os.environ.get("STORAGE_DRIVER", "vfs")]


def buildah(*args: str, timeout: float = 1800) -> str:
    proc = subprocess.run([*BUILDAH, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


def image_config(image: str) -> dict[str, Any]:
    """The image's OCI config (``config`` of ``buildah inspect``'s OCIv1 view)."""
    data = json.loads(buildah("inspect", "--type", "image", image))
    return dict(data["OCIv1"]["config"])


@dataclass
class Container:
    """One working container of ``image``, started (and restarted) by :meth:`start`."""

    image: str
    name: str
    binds: dict[str, Path] = field(default_factory=dict)  # container path → host folder
    ctr: str = ""
    root: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def create(self) -> None:
        self.config = image_config(self.image)
        self.ctr = buildah("from", "--pull-never", "--name", self.name, self.image)
        self.root = buildah("mount", self.ctr)

    def script(self, env: dict[str, str]) -> str:
        """The shell that sets up the mounts and execs the entrypoint as the image's user."""
        cfg = self.config
        user = cfg.get("User") or "0:0"
        uid, _, gid = user.partition(":")
        r = shlex.quote(self.root)
        lines = [
            "set -eu",
            f"mount --bind {r} {r}",  # a mount of its own, so it can be made read-only
            f"mount -o remount,bind,ro {r}",
            f"mount -t proc proc {r}/proc",
            f"mount --rbind /dev {r}/dev",
            f"mount --rbind /sys {r}/sys",
        ]
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            lines.append(f"if [ -f {r}{path} ]; then mount --bind {path} {r}{path}; fi")
        for path in sorted(cfg.get("Volumes") or {}):
            target = shlex.quote(self.root + path)
            if path in self.binds:
                lines.append(f"mount --bind {shlex.quote(str(self.binds[path]))} {target}")
            elif path == "/tmp":
                lines.append(f"mount -t tmpfs -o mode=1777 tmpfs {target}")
            else:  # an emptyDir the pod's fsGroup makes writable
                lines.append(
                    f"mount -t tmpfs -o mode=0775,uid={uid},gid={gid or uid} tmpfs {target}"
                )
        # the guard: the root file system really is read-only for the service
        lines.append(
            f"if touch {r}/.rw-probe 2>/dev/null; then echo 'root is writable' >&2; exit 97; fi"
        )
        argv = [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]
        envs = [f"{k}={v}" for k, v in env.items()]
        lines.append(
            f"exec chroot --userspec={shlex.quote(user)} {r} /usr/bin/env -i "
            f"-C {shlex.quote(cfg.get('WorkingDir') or '/')} "
            + " ".join(shlex.quote(e) for e in envs)
            + " "
            + " ".join(shlex.quote(a) for a in argv)
        )
        return "\n".join(lines) + "\n"

    def start(self, log: Path, env: dict[str, str] | None = None) -> float:
        """Start the entrypoint (the image's environment, then ``env``); returns the start time."""
        image_env = dict(e.split("=", 1) for e in self.config.get("Env") or [])
        script = self.script({**image_env, **(env or {})})
        started = time.monotonic()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--pid",
                    "--fork",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return started

    def _pid1(self, proc: subprocess.Popen[bytes]) -> int | None:
        """The host PID of the container's PID 1 (tini): ``unshare --fork``'s one child."""
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the container's PID 1 (tini, which forwards it to the service), as a cluster
        does; SIGKILL after ``grace``. PID 1's end ends every process in its PID namespace."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pid1 = self._pid1(proc)
        with contextlib.suppress(ProcessLookupError):
            if pid1 is not None:
                os.kill(pid1, signal.SIGTERM)
            else:
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def remove(self) -> None:
        self.stop()
        if self.ctr:
            with contextlib.suppress(RuntimeError):
                buildah("umount", self.ctr)
            with contextlib.suppress(RuntimeError):
                buildah("rm", self.ctr)
            self.ctr = ""
