"""The models a workflow uses, found through ComfyUI's own folder layout (``models/<folder>``,
``extra_model_paths.yaml``): :func:`find_models` and, for what a lock needs but this machine
lacks, :func:`missing_models`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LockError, ModelsMissing
from .trees import safe_relpath

__all__ = ["find_models", "missing_models", "MODEL_SUFFIXES"]


#: model folders whose files ship with ComfyUI itself (not models to fetch).
_SOURCE_FOLDERS = frozenset({"configs"})


def _model_dirs(comfyui_dir: Path) -> list[tuple[str, Path]]:
    """ComfyUI's model folders as ``(folder name, directory)``, in ComfyUI's search order."""
    dirs: list[tuple[str, Path]] = []
    models = comfyui_dir / "models"
    if models.is_dir():
        for sub in sorted(models.iterdir()):
            if sub.is_dir() and not sub.name.startswith(".") and sub.name not in _SOURCE_FOLDERS:
                dirs.append((sub.name, sub))
    dirs += _extra_model_dirs(comfyui_dir / "extra_model_paths.yaml")
    return dirs


def _extra_model_dirs(yaml_path: Path) -> list[tuple[str, Path]]:
    """The folders an ``extra_model_paths.yaml`` adds, read the way ComfyUI reads it."""
    if not yaml_path.is_file():
        return []
    import yaml

    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise LockError(f"{yaml_path}: cannot read it ({e}); fix or move it aside") from e
    if config is None:
        return []
    if not isinstance(config, dict):
        raise LockError(f"{yaml_path}: expected a mapping of sections, got {type(config).__name__}")
    out: list[tuple[str, Path]] = []
    for section in config.values():
        if not isinstance(section, dict):
            continue
        conf = dict(section)
        base = conf.pop("base_path", None)
        conf.pop("is_default", None)
        base_path: Path | None = None
        if isinstance(base, str) and base:
            base_path = Path(os.path.expandvars(os.path.expanduser(base)))
            if not base_path.is_absolute():
                base_path = yaml_path.parent / base_path
        for folder, value in conf.items():
            if folder == "custom_nodes" or folder in _SOURCE_FOLDERS or not isinstance(value, str):
                continue
            for line in value.split("\n"):
                line = line.strip()
                if not line:
                    continue
                if base_path is not None:
                    full = base_path / line
                elif os.path.isabs(line):
                    full = Path(line)
                else:
                    full = yaml_path.parent / line
                out.append((str(folder), Path(os.path.normpath(full))))
    return out


def _string_values(workflow: Mapping[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for node in workflow.values():
        if not isinstance(node, Mapping):
            continue
        inputs = node.get("inputs")
        if not isinstance(inputs, Mapping):
            continue
        for value in inputs.values():
            if isinstance(value, str):
                seen.setdefault(value, None)
    return list(seen)


def find_models(workflow: Mapping[str, Any], comfyui_dir: Path) -> list[tuple[str, str, Path]]:
    """Every model file the workflow names, as ``(folder, relative path, file)``, sorted.

    A string input value names a model when ``<folder dir>/<value>`` is a file in one of ComfyUI's
    model folders (``models/<folder>/`` of the tree, then each folder that
    ``extra_model_paths.yaml`` adds). Only those candidate paths are checked. The first match per
    folder name wins, as in ComfyUI; a name found in several folders is recorded for each.
    """
    comfyui_dir = Path(comfyui_dir)
    dirs = _model_dirs(comfyui_dir)
    found: dict[tuple[str, str], Path] = {}
    for value in _string_values(workflow):
        rel = safe_relpath(value)
        if rel is None:
            continue
        for folder, directory in dirs:
            if (folder, rel) in found:
                continue
            path = directory / rel
            if path.is_file():
                found[(folder, rel)] = path
    return [(folder, rel, found[(folder, rel)]) for folder, rel in sorted(found)]


#: endings of model weight files: a string input that ends so names a model file
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".gguf", ".onnx")


def missing_models(workflow: Mapping[str, Any], comfyui_dir: Path) -> ModelsMissing | None:
    """The error naming every input that names a model file (by its ending, see
    :data:`MODEL_SUFFIXES`) which none of ComfyUI's model folders holds; ``None`` when all are
    there. ``details``: ``{"node", "class_type", "input", "file"}`` per missing reference."""
    comfyui_dir = Path(comfyui_dir)
    dirs = _model_dirs(comfyui_dir)
    present = {rel for _, rel, _ in find_models(workflow, comfyui_dir)}
    missing: list[dict[str, str]] = []
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping) or str(node.get("class_type", "")).startswith(
            "ComfyPack"
        ):
            continue  # comfypack's own input nodes take files from the caller, not model folders
        for name, value in inputs.items():
            if not isinstance(value, str) or not value.lower().endswith(MODEL_SUFFIXES):
                continue
            rel = safe_relpath(value)
            if rel is not None and (comfyui_dir / "input" / rel).is_file():
                continue  # an input file (LoadImage-like nodes), not a model
            if rel is None or rel not in present:
                missing.append(
                    {
                        "node": str(node_id),
                        "class_type": str(node.get("class_type")),
                        "input": str(name),
                        "file": value,
                    }
                )
    if not missing:
        return None
    extra = len([d for d in dirs if not d[1].is_relative_to(comfyui_dir / "models")])
    where = f"{comfyui_dir / 'models'}/<folder>/" + (
        f" and {extra} folder(s) from extra_model_paths.yaml" if extra else ""
    )
    refs = "; ".join(
        f"{m['file']} (node {m['node']} {m['class_type']}, input {m['input']})" for m in missing
    )
    return ModelsMissing(
        f"{len(missing)} model file(s) the workflow names are not in ComfyUI's model folders: {refs}. "
        f"Searched {where}. Put each file into its folder (e.g. models/checkpoints/), or serve a "
        "pack whose lock says where to download them",
        details=missing,
    )
