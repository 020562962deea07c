"""The wheel carries the library, the CLI, the BentoML service and the node package with its web
files (mapped from custom_nodes/ at build time), and no tests; the node pack's registry metadata."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

import comfypack

ROOT = Path(__file__).resolve().parents[2]
NODES = ROOT / "custom_nodes" / "comfypack_nodes"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    # build from a copy so the in-tree build/ and *.egg-info of the editable install stay untouched
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "comfypack", src / "comfypack", ignore=ignore)
    shutil.copytree(ROOT / "custom_nodes", src / "custom_nodes", ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0 and "No matching distribution" in r.stdout + r.stderr:
        pytest.skip("setuptools/wheel for the isolated build are not reachable from here")
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("comfypack-*.whl")
    with zipfile.ZipFile(whl) as z:
        return set(z.namelist())


def test_wheel_carries_library_cli_service_and_node_package(wheel_names: set[str]) -> None:
    lib = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "comfypack").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert lib - wheel_names == set(), (
        "a comfypack subpackage is missing from [tool.setuptools] packages"
    )
    assert "comfypack/serve/bento_service.py" in wheel_names and "comfypack/py.typed" in wheel_names
    nodes = {
        f"comfypack/_custom_nodes/comfypack_nodes/{p.relative_to(NODES).as_posix()}"
        for p in NODES.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert "comfypack/_custom_nodes/comfypack_nodes/web/comfypack.js" in nodes
    assert nodes - wheel_names == set()
    entry = next(n for n in wheel_names if n.endswith(".dist-info/entry_points.txt"))
    assert entry and any(n.startswith("comfypack/ship/templates/") for n in wheel_names)
    assert not [
        n
        for n in wheel_names
        if n.startswith(("tests/", "custom_nodes/", "service/", "examples/"))
        or "/tests/" in n
        or "__pycache__" in n
    ]


def test_wheel_declares_the_cli_and_no_torch_or_comfyui(wheel_names: set[str]) -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["scripts"]["comfypack"] == "comfypack.cli:main"
    deps = " ".join(meta["dependencies"]).lower()
    assert "torch" not in deps and "comfyui" not in deps


def test_node_pack_registry_metadata() -> None:
    data = tomllib.loads((NODES / "pyproject.toml").read_text())
    project, comfy = data["project"], data["tool"]["comfy"]
    assert project["name"] == "comfypack-nodes" and "comfyui" not in project["name"].lower()
    assert project["version"] == comfypack.__version__
    assert project["description"] and project["urls"]["Repository"].startswith("https://")
    assert {"PublisherId", "DisplayName", "Icon"} <= set(comfy)
    assert comfy["PublisherId"] and comfy["DisplayName"]
    # the icon ships in the node pack; Icon is its raw URL under the Repository address
    assert (NODES / "icon.svg").is_file()
    repo = project["urls"]["Repository"].removeprefix("https://github.com/")
    assert (
        comfy["Icon"]
        == f"https://raw.githubusercontent.com/{repo}/main/custom_nodes/comfypack_nodes/icon.svg"
    )
    assert project["dependencies"] == [f"comfypack=={comfypack.__version__}"]
    reqs = (NODES / "requirements.txt").read_text().split()
    assert reqs == project["dependencies"]
