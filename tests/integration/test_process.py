"""The ComfyUI worker process: starts headless on 127.0.0.1, detects a crash, leaves no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from conftest import require_comfyui

from comfypack.comfyui.process import ComfyUIProcess
from comfypack.comfyui.source import comfyui_version
from comfypack.errors import ComfyUIUnavailable

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists"; read its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def test_start_answer_stop(tmp_path: Path) -> None:
    proc = ComfyUIProcess(require_comfyui(), workdir=tmp_path / "w")
    with proc:
        pid = proc.pid
        assert pid is not None
        stats = httpx.get(f"{proc.url}/system_stats", timeout=10).json()
        assert stats["system"]["comfyui_version"] == comfyui_version(
            require_comfyui()
        )  # 0.3.75 or 0.28.x
        assert "--cpu" in proc.command() and "127.0.0.1" in proc.command()
        nodes = httpx.get(f"{proc.url}/object_info/ComfyPackInputInt", timeout=10).json()
        assert "ComfyPackInputInt" in nodes, "comfypack's node package must be registered"
        assert (tmp_path / "w" / "input").is_dir() and (tmp_path / "w" / "output").is_dir()
    assert wait_gone(pid, 15)
    assert not proc.is_running()


def test_crash_is_detected(tmp_path: Path) -> None:
    proc = ComfyUIProcess(require_comfyui())
    try:
        proc.start()
        proc.wait_ready()
        assert proc.is_running()
        os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while proc.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proc.is_running()
        assert proc.returncode == -signal.SIGKILL
    finally:
        proc.stop()


def test_exit_during_startup_is_a_clear_error(tmp_path: Path) -> None:
    proc = ComfyUIProcess(require_comfyui(), extra_args=["--no-such-flag"])
    try:
        proc.start()
        with pytest.raises(ComfyUIUnavailable, match="exited during start-up"):
            proc.wait_ready(timeout=60)
    finally:
        proc.stop()


def test_no_orphan_when_the_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL the Python process that started ComfyUI: ComfyUI must exit on its own."""
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(f"""
        import sys, time
        from comfypack.comfyui.process import ComfyUIProcess
        p = ComfyUIProcess({str(require_comfyui())!r})
        p.start()
        p.wait_ready()
        open({str(pid_file)!r}, "w").write(str(p.pid))
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.2)
        assert pid_file.exists(), "the child ComfyUI did not start"
        child = int(pid_file.read_text())
        assert alive(child)
        parent.kill()
        parent.wait(10)
        assert wait_gone(child, 20), f"ComfyUI (pid {child}) outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
