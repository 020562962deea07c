"""`comfypack nodes install/uninstall` against fake ComfyUI folders: refuses a folder that is not a
ComfyUI, links idempotently, never replaces or removes what it did not create."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from comfypack.cli import cli
from comfypack.comfyui import nodepack
from comfypack.errors import RequestError

ROOT = Path(__file__).resolve().parents[3]
OWN = (ROOT / "custom_nodes" / "comfypack_nodes").resolve()


def fake_comfyui(tmp_path: Path, custom_nodes: bool = True) -> Path:
    d = tmp_path / "ComfyUI"
    d.mkdir()
    (d / "main.py").write_text("# ComfyUI\n")
    (d / "comfyui_version.py").write_text('__version__ = "0.3.75"\n')
    if custom_nodes:
        (d / "custom_nodes").mkdir()
    return d


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def _own_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFYPACK_NODES_DIR", str(OWN.parent))


def test_refuses_a_folder_that_is_not_comfyui(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    for d in (tmp_path, tmp_path / "nope"):
        result = invoke("nodes", "install", "--comfyui", str(d))
        assert result.exit_code == 2
        err = result.output.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err and str(d) in err
    assert "comfyui_version.py" in invoke("nodes", "install", "--comfyui", str(tmp_path)).output
    assert invoke("nodes", "uninstall", "--comfyui", str(tmp_path)).exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.py"]


def test_install_links_idempotently_and_uninstall_restores(tmp_path: Path) -> None:
    d = fake_comfyui(tmp_path)
    link = d / "custom_nodes" / "comfypack_nodes"
    result = invoke("nodes", "install", "--comfyui", str(d))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == OWN
    assert "pip install comfypack==" in result.output and "restart ComfyUI" in result.output
    again = invoke("nodes", "install", "--comfyui", str(d))
    assert again.exit_code == 0 and "already linked" in again.output
    assert nodepack.install_nodes(d).action == "unchanged"
    result = invoke("nodes", "uninstall", "--comfyui", str(d))
    assert result.exit_code == 0, result.output
    assert not link.exists() and not link.is_symlink()
    assert list((d / "custom_nodes").iterdir()) == []
    assert invoke("nodes", "uninstall", "--comfyui", str(d)).exit_code == 0  # nothing left: no-op
    assert OWN.is_dir() and (OWN / "__init__.py").is_file()  # the target itself is untouched


def test_creates_custom_nodes_when_missing(tmp_path: Path) -> None:
    d = fake_comfyui(tmp_path, custom_nodes=False)
    assert nodepack.install_nodes(d).action == "linked"
    assert (d / "custom_nodes" / "comfypack_nodes").resolve() == OWN


@pytest.mark.parametrize("kind", ["folder", "file", "foreign_link", "dangling_link"])
def test_never_replaces_or_removes_what_it_did_not_create(tmp_path: Path, kind: str) -> None:
    d = fake_comfyui(tmp_path)
    link = d / "custom_nodes" / "comfypack_nodes"
    other = tmp_path / "someone_elses"
    other.mkdir()
    (other / "__init__.py").write_text("")
    if kind == "folder":
        link.mkdir()
        (link / "__init__.py").write_text("# a copy\n")
    elif kind == "file":
        link.write_text("x")
    elif kind == "foreign_link":
        link.symlink_to(other, target_is_directory=True)
    else:
        link.symlink_to(tmp_path / "gone", target_is_directory=True)
    before = os.readlink(link) if link.is_symlink() else None
    for cmd in ("install", "uninstall"):
        result = invoke("nodes", cmd, "--comfyui", str(d))
        assert result.exit_code == 2, result.output
        assert str(link) in " ".join(result.output.split()) and "Traceback" not in result.output
    assert link.is_symlink() == (before is not None)
    if before is not None:
        assert os.readlink(link) == before
    elif kind == "folder":
        assert (link / "__init__.py").read_text() == "# a copy\n"
    else:
        assert link.read_text() == "x"
    assert (other / "__init__.py").is_file()


def test_a_link_to_another_comfypack_wheel_is_ours_to_remove_not_to_replace(tmp_path: Path) -> None:
    d = fake_comfyui(tmp_path)
    wheel_nodes = tmp_path / "site-packages" / "comfypack" / "_custom_nodes" / "comfypack_nodes"
    (wheel_nodes / "web").mkdir(parents=True)
    (wheel_nodes / "__init__.py").write_text("")
    link = d / "custom_nodes" / "comfypack_nodes"
    link.symlink_to(wheel_nodes, target_is_directory=True)
    with pytest.raises(RequestError, match="comfypack nodes uninstall"):
        nodepack.install_nodes(d)
    assert nodepack.uninstall_nodes(d).action == "removed"
    assert not link.is_symlink() and wheel_nodes.is_dir()
    assert nodepack.install_nodes(d, wheel_nodes).action == "linked"
    assert link.resolve() == wheel_nodes.resolve()


def test_python_option_probes_that_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = fake_comfyui(tmp_path)
    # this interpreter has comfypack: its node package is linked and nothing is pip-installed
    calls: list[list[str]] = []
    monkeypatch.setattr("subprocess.run", _spy(calls))
    result = invoke("nodes", "install", "--comfyui", str(d), "--python", sys.executable)
    assert result.exit_code == 0, result.output
    assert not [c for c in calls if "pip" in c]
    assert (d / "custom_nodes" / "comfypack_nodes").resolve() == OWN


def test_python_option_without_comfypack_runs_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = fake_comfyui(tmp_path)
    calls: list[list[str]] = []
    real = _spy(calls)

    def fake_run(cmd: list[str], *a, **kw):
        if "pip" in cmd:
            calls.append(list(cmd))
            return _Done(1)
        if cmd[1] == "-c":  # the probe: comfypack is missing there
            calls.append(list(cmd))
            return _Done(3)
        return real(cmd, *a, **kw)

    monkeypatch.setattr("subprocess.run", fake_run)
    result = invoke("nodes", "install", "--comfyui", str(d), "--python", "/opt/py/bin/python")
    assert result.exit_code == 1
    assert ["/opt/py/bin/python", "-m", "pip", "install", "comfypack==0.1.0"] in calls
    assert "pip could not install comfypack" in result.output
    assert not (d / "custom_nodes" / "comfypack_nodes").is_symlink()


def test_guesses_the_comfyui_venv_python_for_the_printed_command(tmp_path: Path) -> None:
    d = fake_comfyui(tmp_path)
    py = d / "venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("")
    if sys.platform != "win32":
        assert nodepack.guess_comfyui_python(d) == str(py)
        result = invoke("nodes", "install", "--comfyui", str(d))
        assert f"{py} -m pip install comfypack==" in " ".join(result.output.split())


class _Done:
    def __init__(self, rc: int) -> None:
        self.returncode, self.stdout, self.stderr = rc, "", ""


def _spy(calls: list[list[str]]):
    import subprocess

    real = subprocess.run

    def run(cmd, *a, **kw):
        calls.append(list(cmd))
        return real(cmd, *a, **kw)

    return run


def test_the_pip_hint_only_when_comfyuis_python_lacks_comfypack(tmp_path: Path) -> None:
    """Without --python, the ComfyUI's venv is found next to it: a Python without comfypack gets
    the pip command; this very interpreter (comfypack run from ComfyUI's own venv) gets none."""
    import shutil
    import subprocess

    d = fake_comfyui(tmp_path)
    bare = d / "venv"
    subprocess.run(
        [
            getattr(sys, "_base_executable", sys.executable),
            "-m",
            "venv",
            "--without-pip",
            str(bare),
        ],
        check=True,
        timeout=120,
    )
    result = invoke("nodes", "install", "--comfyui", str(d))
    assert result.exit_code == 0, result.output
    assert f"run: {bare / 'bin' / 'python'} -m pip install comfypack==" in result.output
    assert invoke("nodes", "uninstall", "--comfyui", str(d)).exit_code == 0

    shutil.rmtree(bare)
    bare.symlink_to(sys.prefix)  # now ComfyUI's venv is the one running this comfypack
    result = invoke("nodes", "install", "--comfyui", str(d))
    assert result.exit_code == 0, result.output
    assert "pip install" not in result.output and "linked:" in result.output
