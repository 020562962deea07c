"""Crafted packs against the real ``comfypack unpack`` (and ``serve PACK``), run as subprocesses.

Each pack is refused before pip or git runs or anything is written: exit 2, one line on stderr,
no traceback, no target folder, and nothing the pack asked for executed (a package whose
``setup.py`` would leave a marker; a git ``ext::`` transport that would run a command). Zip
bombs and oversized packs are refused from the zip directory, unread. No ComfyUI is needed: every
refusal comes first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from comfypack.comfyui.source import DEFAULT_PACKAGED
from comfypack.errors import LockError
from comfypack.lock.create import workflow_sha256
from comfypack.pack.restore import check_sources, read_pack
from comfypack.workflow.interface import load_workflow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "workflows" / "text_tools" / "workflow_api.json"


def _lock(**changes: Any) -> dict[str, Any]:
    lock: dict[str, Any] = {
        "lock_version": 1,
        "created_by": "comfypack test",
        "python": {"version": "3.11.7", "platform": "linux-x86_64"},
        "comfyui": {"version": "0.3.75", "source": DEFAULT_PACKAGED.describe()},
        "custom_nodes": [],
        "packages": [{"name": "numpy", "version": "2.3.1"}],
        "models": [],
        "workflow": {"sha256": workflow_sha256(load_workflow(WORKFLOW))},
    }
    lock.update(changes)
    return lock


def _pack(
    path: Path, lock: dict[str, Any], extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()
) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("workflow_api.json", WORKFLOW.read_bytes())
        zf.writestr("comfypack.lock.json", json.dumps(lock))
        for info, data in extra:
            zf.writestr(info, data)
    return path


def _comfypack(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "COMFYPACK_ALLOW_LOCAL_SOURCES"}
    full.update(COMFYPACK_HOME=str(tmp_path / "home"), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "comfypack.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
        cwd=tmp_path,
    )


def _refused(res: subprocess.CompletedProcess[str], needle: str, *, logs: bool = False) -> None:
    """Exit 2 and one line (``logs``: one ``error:`` line after the command's own log lines)."""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    if logs:
        lines = [ln for ln in lines if ln.startswith("error")]
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert needle in lines[0], lines[0]


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """A package whose setup.py (run by any pip that builds it) leaves a marker file."""
    pkg = tmp_path / "evilpkg"
    pkg.mkdir()
    marker = tmp_path / "PWNED"
    (pkg / "setup.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "from setuptools import setup\nsetup(name='evilpkg', version='1')\n"
    )
    return pkg, marker


def _git_node(url: str) -> dict[str, Any]:
    return {
        "name": "node",
        "source": {"type": "git", "url": url, "commit": "a" * 40},
        "dirty": False,
    }


def test_a_well_formed_lock_passes_the_checks(tmp_path: Path) -> None:
    """The control: the packs below differ from this one only in the field under test."""
    contents = read_pack(_pack(tmp_path / "ok.cpack.zip", _lock()))
    check_sources(contents.lock)
    local = _lock(custom_nodes=[_git_node((tmp_path / "repo").as_uri())])
    check_sources(read_pack(_pack(tmp_path / "local.cpack.zip", local)).lock, allow_local=True)
    with pytest.raises(LockError, match="allow-local-sources"):
        check_sources(read_pack(tmp_path / "local.cpack.zip").lock)


def test_crafted_package_pins_never_reach_pip(tmp_path: Path, evil: tuple[Path, Path]) -> None:
    pkg, marker = evil
    cases = {
        "direct reference": {"packages": [{"name": f"evilpkg @ {pkg.as_uri()}#", "version": "1"}]},
        "an option as name": {
            "packages": [{"name": "--index-url=http://127.0.0.1:9/simple#", "version": "1"}]
        },
        "a path as name": {"packages": [{"name": str(pkg), "version": "1"}]},
        "a marker in the version": {
            "packages": [{"name": "numpy", "version": "1.0;os_name=='posix'"}]
        },
        "not PEP 440": {"packages": [{"name": "numpy", "version": "1.0.foo"}]},
        "an option as ComfyUI package": {
            "comfyui": {
                "version": "0.3.75",
                "source": {
                    **DEFAULT_PACKAGED.describe(),
                    "package": "--index-url=http://127.0.0.1:9/#",
                },
            }
        },
        "a URL as ComfyUI package version": {
            "comfyui": {
                "version": "0.3.75",
                "source": {**DEFAULT_PACKAGED.describe(), "version": f"2.22.2 @ {pkg.as_uri()}"},
            }
        },
    }
    for name, change in cases.items():
        pack = _pack(tmp_path / f"{name.replace(' ', '-')}.cpack.zip", _lock(**change))
        dest = tmp_path / "ws" / name.replace(" ", "-")
        res = _comfypack(
            tmp_path, "unpack", str(pack), "--dir", str(dest)
        )  # with a venv: pip would run
        _refused(res, "lock")
        assert not dest.exists(), name
    assert not marker.exists()


def test_crafted_git_sources_never_reach_git(tmp_path: Path) -> None:
    marker = tmp_path / "GIT-PWNED"
    cases = {
        "ext transport": (f"ext::sh -c touch% {marker}", "lock"),
        "an option": (f"--upload-pack=touch {marker}", "lock"),
        "ssh option host": (f"ssh://-oProxyCommand=touch%20{marker}/x", "lock"),
        "plain http": ("http://example.invalid/repo.git", "lock"),
        "file remote": ((tmp_path / "repo").as_uri(), "--allow-local-sources"),
        "path remote": (str(tmp_path / "repo"), "--allow-local-sources"),
    }
    for name, (url, needle) in cases.items():
        for where in ("node", "comfyui"):
            change = (
                {"custom_nodes": [_git_node(url)]}
                if where == "node"
                else {
                    "comfyui": {
                        "version": "0.3.75",
                        "source": {"type": "git", "url": url, "commit": "b" * 40},
                    }
                }
            )
            pack = _pack(tmp_path / f"{where}-{name.replace(' ', '-')}.cpack.zip", _lock(**change))
            dest = tmp_path / "ws" / f"{where}-{name.replace(' ', '-')}"
            _refused(
                _comfypack(tmp_path, "unpack", str(pack), "--dir", str(dest), "--no-venv"), needle
            )
            assert not dest.exists(), (where, name)
    assert not marker.exists()


def test_a_local_comfyui_archive_needs_the_flag(tmp_path: Path) -> None:
    archive = tmp_path / "ComfyUI.tar.gz"
    archive.write_bytes(b"not really")
    source = {
        "type": "archive",
        "url": archive.as_uri(),
        "sha256": "c" * 64,
        "size": 10,
        "root": "",
    }
    pack = _pack(
        tmp_path / "archive.cpack.zip", _lock(comfyui={"version": "0.28.2", "source": source})
    )
    _refused(
        _comfypack(tmp_path, "unpack", str(pack), "--dir", str(tmp_path / "ws"), "--no-venv"),
        "--allow-local-sources",
    )
    assert not (tmp_path / "ws").exists()
    # `serve PACK` restores the pack itself: the same refusal, before anything starts
    _refused(
        _comfypack(tmp_path, "serve", str(pack), "--port", "9"), "--allow-local-sources", logs=True
    )


def _zeros(name: str, size: int) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info, bytes(size)


def test_zip_bombs_and_oversized_packs_are_refused_unread(tmp_path: Path) -> None:
    bomb = _pack(
        tmp_path / "bomb.cpack.zip", _lock(), [_zeros("assets/bomb.bin", 64 * 1024 * 1024)]
    )
    assert bomb.stat().st_size < 200_000  # 64 MiB of assets in a pack of ~64 KB
    res = _comfypack(tmp_path, "unpack", str(bomb), "--dir", str(tmp_path / "ws"), "--no-venv")
    _refused(res, "zip bomb")
    assert not (tmp_path / "ws").exists()
    _refused(_comfypack(tmp_path, "serve", str(bomb), "--port", "9"), "zip bomb", logs=True)
    assert not (tmp_path / "home" / "workspaces").exists()

    many = _pack(
        tmp_path / "many.cpack.zip", _lock(), [(f"assets/{i}.txt", b"x") for i in range(60)]
    )
    res = _comfypack(
        tmp_path,
        "unpack",
        str(many),
        "--dir",
        str(tmp_path / "ws"),
        "--no-venv",
        env={"COMFYPACK_PACK_MAX_ENTRIES": "50"},
    )
    _refused(res, "COMFYPACK_PACK_MAX_ENTRIES")

    big = _pack(tmp_path / "big.cpack.zip", _lock(), [("assets/noise.bin", os.urandom(2_000_000))])
    res = _comfypack(
        tmp_path,
        "unpack",
        str(big),
        "--dir",
        str(tmp_path / "ws"),
        "--no-venv",
        env={"COMFYPACK_PACK_MAX_BYTES": "1000000"},
    )
    _refused(res, "COMFYPACK_PACK_MAX_BYTES")
    assert not (tmp_path / "ws").exists()
    read_pack(big)  # the control: within the default limits it is a valid pack
