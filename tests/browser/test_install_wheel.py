"""Install comfypack the way a ComfyUI user does (issue 18's "Done when"), then use the buttons.

1. ``python -m build`` makes the sdist and the wheel (from a copy of the sources, so the shared
   checkout gets no ``build/`` or ``*.egg-info``).
2. A user's ComfyUI: a plain copy of the provisioned ComfyUI (``.cache/comfyui``; the current
   line's under ``make test-current``), without any comfypack link in ``custom_nodes``, with its own venv in ``ComfyUI/venv`` (the README's
   layout) holding torch and ComfyUI's requirements — and no comfypack, no editable install, no
   repository on the path (``PYTHONPATH`` and every ``COMFYPACK_*`` setting are unset, every
   command runs outside the checkout).
3. The README's own install commands (the ``<!-- readme-install -->`` block, read from README.md,
   with the wheel in place of ``comfypack``), run twice: the second run changes nothing.
4. That ComfyUI started headless as a user starts it (``venv/bin/python main.py``), opened in
   headless Chromium: **Serve** gives a service that answers 200 with the typed result, run by
   that venv's Python; **Pack** downloads a pack that the installed ``comfypack inspect`` accepts.
5. The README's uninstall commands: the ComfyUI tree is as it was before the install (a listing
   with hashes, links and modes) and the venv no longer has comfypack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _frontend import PANEL, Frontend, load_into_tab, require_chromium, wait_panel
from conftest import EXAMPLES, ROOT, require_comfyui, stop_group

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

TEXT_TOOLS = EXAMPLES / "text_tools"
ARTIFACTS = ROOT / "test-artifacts" / "install"
PLACEHOLDER = "/path/to/ComfyUI"

# What ComfyUI itself writes into its folder while it runs, and the user's venv that the README
# puts inside it: left out of the before/after comparison. ComfyUI creates user/ (its settings
# database, the frontend's settings), temp/ and output/ at start, input/3d when its Load3D node
# is listed (/object_info), and __pycache__ wherever it imports; the venv is changed by pip on
# purpose (checked on its own: comfypack gone).
RUNTIME = {"user", "temp", "output", "input/3d", "venv"}


def _readme_commands(marker: str) -> list[list[str]]:
    """The commands of the ```bash block right after ``<!-- marker -->`` in README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- {re.escape(marker)} -->\s*```bash\n(.*?)```", text, re.S)
    assert m, f"README.md has no ```bash block after <!-- {marker} -->"
    lines = [ln.split(" #", 1)[0].strip() for ln in m.group(1).splitlines()]
    return [shlex.split(ln) for ln in lines if ln and not ln.startswith("#")]


def _as_run(cmd: list[str], comfyui: Path, wheel: Path) -> list[str]:
    """A README command with the placeholder folder replaced, and the wheel for ``comfypack`` in
    ``pip install`` (the README says to do just that while comfypack is not on PyPI)."""
    out = [a.replace(PLACEHOLDER, str(comfyui)) for a in cmd]
    if out[1:4] == ["-m", "pip", "install"]:
        out = [str(wheel) if a == "comfypack" else a for a in out]
        assert str(wheel) in out, f"the README's pip install does not install comfypack: {cmd}"
    return out


def _clean_env(home: Path) -> dict[str, str]:
    """The environment of a user's shell: none of this checkout's settings (PYTHONPATH, every
    COMFYPACK_*, an active venv, a PATH entry inside the checkout). comfypack's state (service
    folders) goes to ``home`` instead of the user's ~/.cache/comfypack."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COMFYPACK_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PATH"] = os.pathsep.join(
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if p and not Path(p).resolve().is_relative_to(ROOT)
    )
    env["COMFYPACK_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (
        f"$ {shlex.join(cmd)} (exit {r.returncode})\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    )
    return r.stdout


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (but RUNTIME and __pycache__): its kind, mode and content hash
    (a link: its target)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):  # a link to a folder: recorded, not entered
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d for d in dirnames if d != "__pycache__" and (rel / d).as_posix() not in RUNTIME
        )
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            st = path.lstat()
            key = (rel / name).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[key] = f"link {os.readlink(path)}"
            elif stat.S_ISDIR(st.st_mode):
                out[key] = f"dir {oct(st.st_mode & 0o7777)}"
            else:
                out[key] = (
                    f"file {oct(st.st_mode & 0o7777)} {hashlib.sha256(path.read_bytes()).hexdigest()}"
                )
    return out


def _plain_copy(src: Path, dst: Path) -> None:
    """ComfyUI as provisioned, without comfypack's link and without what a run left behind."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skip = {
            n
            for n in names
            if n == "__pycache__" or (here / n).relative_to(src).as_posix() in RUNTIME
        }
        if here == src / "custom_nodes":
            skip |= {n for n in names if n == "comfypack_nodes"}
        return skip

    shutil.copytree(src, dst, symlinks=True, ignore=ignore)


def _build_wheel(out: Path, work: Path) -> Path:
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("comfypack", "custom_nodes"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    r = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=work,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # setuptools' warning for a folder of data files that is not a listed package (it says it
    # will stop shipping them)
    assert "would be ignored" not in r.stdout + r.stderr, r.stdout + r.stderr
    (wheel,) = out.glob("comfypack-*-py3-none-any.whl")
    return wheel


def _requirements(comfyui: Path) -> list[str]:
    """What a user's ComfyUI venv holds: torch (comfypack's tested pins) + ComfyUI's
    requirements.txt without its torch lines + requests."""
    from comfypack.comfyui.source import TORCH_PINS

    torch_names = {"torch", "torchvision", "torchaudio"}
    keep = [
        ln.strip()
        for ln in (comfyui / "requirements.txt").read_text().splitlines()
        if ln.strip()
        and not ln.strip().startswith("#")
        and re.split(r"[<>=!~\[; ]", ln.strip(), maxsplit=1)[0].lower() not in torch_names
    ]
    return [*TORCH_PINS, *keep, "requests"]


@contextlib.contextmanager
def _comfyui_running(comfyui: Path, python: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """``python main.py --cpu`` on 127.0.0.1 at a free port, as a user starts it; yields its URL
    once comfypack's routes answer; stops its process group."""
    from comfypack.comfyui.process import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)],
            cwd=comfyui,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (
                f"ComfyUI exited ({proc.returncode}):\n{log.read_text()[-4000:]}"
            )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/comfypack/capabilities", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, (
                f"ComfyUI did not answer in 180 s:\n{log.read_text()[-4000:]}"
            )
            time.sleep(1)
        yield url
    finally:
        stop_group(proc)


def _missing_tools() -> str | None:
    try:
        import build  # noqa: F401
    except ImportError:
        return "the `build` package is not installed (pip install -e '.[dev]')"
    return None


def test_install_from_the_wheel_the_documented_way_serve_pack_and_uninstall(tmp_path: Path) -> None:
    provisioned = require_comfyui()
    require_chromium()
    why = _missing_tools()
    if why:
        if os.environ.get("COMFYPACK_REQUIRE_COMFYUI") == "1":
            pytest.fail(why)
        pytest.skip(why)

    work = tmp_path
    comfyui = work / "ComfyUI"
    venv = comfyui / "venv"
    python = venv / "bin" / "python"
    env = _clean_env(work / "comfypack-home")
    try:
        # 1. the wheel
        wheel = _build_wheel(work / "dist", work)

        # 2. a user's ComfyUI with its own venv (uv, from its cache: seconds, hard links)
        _plain_copy(provisioned, comfyui)
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(venv)], cwd=work, env=env)
        _run(
            [
                sys.executable,
                "-m",
                "uv",
                "pip",
                "install",
                "--python",
                str(python),
                *_requirements(comfyui),
            ],
            cwd=work,
            env=env,
        )
        probe = [str(python), "-c", "import importlib.util as u; print(u.find_spec('comfypack'))"]
        assert _run(probe, cwd=work, env=env).strip() == "None", (
            "the fresh venv already has comfypack"
        )
        before = _snapshot(comfyui)
        assert "custom_nodes/comfypack_nodes" not in before and "main.py" in before

        # 3. the README's install commands, twice (the second changes nothing)
        commands = [_as_run(c, comfyui, wheel) for c in _readme_commands("readme-install")]
        assert any("nodes" in c and "install" in c for c in commands), commands
        said = [_run(cmd, cwd=work, env=env) for cmd in commands]
        assert "lacks it" not in said[-1], f"comfypack is in that venv, yet: {said[-1]}"
        link = comfyui / "custom_nodes" / "comfypack_nodes"
        site = Path(
            _run(
                [
                    str(python),
                    "-c",
                    "import comfypack, pathlib; print(pathlib.Path(comfypack.__file__).parent)",
                ],
                cwd=work,
                env=env,
            ).strip()
        )
        assert site.is_relative_to(venv), f"comfypack imported from {site}, not from the venv"
        assert link.is_symlink() and link.resolve() == site / "_custom_nodes" / "comfypack_nodes"
        again = _run(commands[-1], cwd=work, env=env)
        assert "already linked" in again, again

        # 4. ComfyUI as the user starts it; Serve and Pack in the browser
        log = work / "comfyui.log"
        with _comfyui_running(comfyui, python, env, log) as url:
            with Frontend(url) as fe:
                fe.page.wait_for_selector("button.comfypack-serve", state="visible", timeout=30_000)
                fe.dismiss_dialogs(
                    settle_ms=3000
                )  # a new user's ComfyUI: first-run dialogs come late
                _serve(fe, url, python)
                _pack(fe, work, python, env)
        text = log.read_text(errors="replace")
        assert f"{link}" in text, "ComfyUI did not load the linked node package"
        assert str(ROOT) not in text, "ComfyUI ran something from the repository checkout"

        # 5. the README's uninstall commands: ComfyUI as it was
        for cmd in _readme_commands("readme-uninstall"):
            _run(_as_run(cmd, comfyui, wheel), cwd=work, env=env)
        after = _snapshot(comfyui)
        assert {
            k: after.get(k) for k in before.keys() | after.keys() if before.get(k) != after.get(k)
        } == {}
        assert _run(probe, cwd=work, env=env).strip() == "None", (
            "pip uninstall left comfypack importable"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)  # a 5 GB venv (hard links to uv's cache, mostly)


def _click_button(fe: Frontend, selector: str) -> None:
    """Click a top-bar button as a user would: first close a dialog the frontend opened over it
    (a fresh ComfyUI's first-run dialogs can open after the page looked ready)."""
    fe.dismiss_dialogs(settle_ms=300)
    fe.page.locator(selector).click()


def _serve(fe: Frontend, url: str, python: Path) -> None:
    page = fe.page
    load_into_tab(fe, json.loads((TEXT_TOOLS / "workflow.json").read_text()), "text_tools")
    _click_button(fe, "button.comfypack-serve")
    state = wait_panel(fe, "ready|error", 180_000)
    panel = page.locator(PANEL)
    fe.screenshot(ARTIFACTS / "serve.png")
    assert state == "ready", panel.inner_text()
    service_id = panel.get_attribute("data-service-id")
    port = int(panel.get_attribute("data-port") or 0)
    assert service_id and port
    try:
        status = httpx.get(f"{url}/comfypack/serve/{service_id}", timeout=30).json()
        cmdline = Path(f"/proc/{status['pid']}/cmdline").read_bytes().split(b"\0")
        assert Path(cmdline[0].decode()) == python, (
            f"the service runs {cmdline[0]!r}, not ComfyUI's Python"
        )
        request = json.loads((TEXT_TOOLS / "request.json").read_text())
        r = httpx.post(f"http://127.0.0.1:{port}/generate", json=request, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json() == {"text": "Hello Comfypack", "length": 15, "contains": True}
        panel.locator("button.cp-stop").click()
        assert wait_panel(fe, "done|error", 60_000) == "done", panel.inner_text()
    finally:
        httpx.delete(f"{url}/comfypack/serve/{service_id}", timeout=60)
    assert httpx.get(f"{url}/comfypack/serve/{service_id}", timeout=30).json()["state"] == "stopped"
    page.locator(f"{PANEL} .cp-close").click()


def _pack(fe: Frontend, work: Path, python: Path, env: dict[str, str]) -> None:
    page = fe.page
    api: dict[str, Any] = load_into_tab(
        fe, json.loads((TEXT_TOOLS / "workflow.json").read_text()), "my_text_tools"
    )
    with page.expect_download(timeout=180_000) as download:
        _click_button(fe, "button.comfypack-pack")
    pack = work / download.value.suggested_filename
    download.value.save_as(pack)
    assert pack.name == "my_text_tools.cpack.zip"
    assert wait_panel(fe, "done|error") == "done", page.locator(PANEL).inner_text()
    fe.screenshot(ARTIFACTS / "pack.png")
    page.locator(f"{PANEL} .cp-close").click()
    # the installed CLI takes it as it is
    out = json.loads(
        _run([str(python.parent / "comfypack"), "inspect", "--json", str(pack)], cwd=work, env=env)
    )
    assert list(out["input_schema"]["properties"]) == [
        "text",
        "suffix",
        "case",
        "needle",
        "case_sensitive",
    ]
    with zipfile.ZipFile(pack) as z:
        assert json.loads(z.read("workflow_api.json")) == api  # exactly what the canvas exports
