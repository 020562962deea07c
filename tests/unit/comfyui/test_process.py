"""comfypack.comfyui.process: which node package a worker loads when the ComfyUI tree has its own
``custom_nodes/comfypack_nodes`` (a link to this package, or another comfypack's copy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfypack.comfyui.process import ComfyUIProcess, node_package_dir


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "ComfyUI"
    (tree / "custom_nodes" / "other_pack").mkdir(parents=True)
    (tree / "custom_nodes" / "single.py").write_text("")
    (tree / "main.py").write_text("")
    return tree


def _setup(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[str]]:
    monkeypatch.setenv("COMFYPACK_EXTRA_NODES_DIRS", str(tmp_path / "extra"))
    (tmp_path / "extra" / "test_nodes").mkdir(parents=True, exist_ok=True)
    proc = ComfyUIProcess(tree, workdir=tmp_path / "work", cpu=True)
    (tmp_path / "work").mkdir(exist_ok=True)
    return proc._node_setup()


def test_a_tree_without_comfypack_nodes_gets_this_package(tmp_path, monkeypatch):
    dirs, args = _setup(_tree(tmp_path), tmp_path, monkeypatch)
    assert dirs == [str(node_package_dir()), str(tmp_path / "extra")]
    assert args == []


def test_a_tree_linking_this_package_is_not_loaded_twice(tmp_path, monkeypatch):
    tree = _tree(tmp_path)
    (tree / "custom_nodes" / "comfypack_nodes").symlink_to(node_package_dir() / "comfypack_nodes")
    dirs, args = _setup(tree, tmp_path, monkeypatch)
    assert dirs == [str(tmp_path / "extra")] and args == []


def test_another_copy_in_the_tree_is_skipped_and_every_other_node_still_loads(
    tmp_path, monkeypatch
):
    tree = _tree(tmp_path)
    stale = tree / "custom_nodes" / "comfypack_nodes"
    stale.mkdir()
    (stale / "__init__.py").write_text("raise SystemExit('the stale copy must not load')\n")
    dirs, args = _setup(tree, tmp_path, monkeypatch)
    exposed = tmp_path / "work" / "nodes"
    assert dirs == [str(exposed), str(tmp_path / "extra")]
    assert (exposed / "comfypack_nodes_active").resolve() == (
        node_package_dir() / "comfypack_nodes"
    ).resolve()
    assert args[:2] == ["--disable-all-custom-nodes", "--whitelist-custom-nodes"]
    assert sorted(args[2:]) == ["comfypack_nodes_active", "other_pack", "single.py", "test_nodes"]


def test_a_registry_install_of_the_node_pack_is_recognised_and_skipped(tmp_path, monkeypatch):
    """`comfy node install comfypack-nodes` / ComfyUI-Manager put the pack under another folder
    name; it is found by its pyproject.toml's name, and skipped like any other copy."""
    import shutil

    from comfypack.comfyui.process import node_package_copies

    tree = _tree(tmp_path)
    registry = tree / "custom_nodes" / "comfypack-nodes"
    shutil.copytree(
        node_package_dir() / "comfypack_nodes",
        registry,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (tree / "custom_nodes" / "other_pack" / "pyproject.toml").write_text(
        '[project]\nname = "other"\n'
    )
    assert node_package_copies(tree / "custom_nodes") == [registry]
    dirs, args = _setup(tree, tmp_path, monkeypatch)
    assert dirs[0] == str(tmp_path / "work" / "nodes")
    assert sorted(args[2:]) == ["comfypack_nodes_active", "other_pack", "single.py", "test_nodes"]
