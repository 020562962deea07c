"""Shared pieces of the comfypack node package.

Everything here is cheap to import: ComfyUI modules that touch the file system
or load torch-heavy helpers are imported by the nodes that need them, when they
run, never when ComfyUI imports this package.

The helpers fall in three groups:

* the contract: node-id prefix, categories, and the ``name`` / ``description``
  / ``filename_prefix`` widgets every comfypack node shares;
* input files: resolving a value such as ``"comfypack/cat.png"`` or
  ``"cat.png [input]"`` to a path, refusing anything that escapes its base
  directory, listing the input directory for upload combos, fingerprinting;
* output files: picking the next free ``<prefix>_00001_.<ext>`` name under the
  output directory, and the PNG/EXIF metadata ComfyUI itself would embed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Literal

import folder_paths
from comfy_api.latest import io, ui

__all__ = [
    "NODE_PREFIX",
    "INPUT_CATEGORY",
    "OUTPUT_CATEGORY",
    "INT64_MIN",
    "INT64_MAX",
    "SEED_MAX",
    "FLOAT_LIMIT",
    "name_input",
    "description_input",
    "filename_prefix_input",
    "resolve_input_file",
    "check_input_file",
    "list_input_files",
    "file_digest",
    "file_stamp",
    "next_output_path",
    "png_metadata",
    "exif_metadata",
]

NODE_PREFIX = "ComfyPack"
"""Every node id of this package starts with this, so ids never clash."""

INPUT_CATEGORY = "comfypack/inputs"
OUTPUT_CATEGORY = "comfypack/outputs"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
SEED_MAX = 0xFFFFFFFFFFFFFFFF
FLOAT_LIMIT = float(2**63 - 1)
"""Widget bound for float widgets; the same one ComfyUI's own primitive nodes use."""

_HASH_CHUNK = 1 << 20


# --------------------------------------------------------------------------
# Shared widgets
# --------------------------------------------------------------------------


def name_input(default: str, *, output: bool = False) -> io.String.Input:
    """The ``name`` widget: the field's name in the generated REST API."""
    if output:
        tooltip = (
            "Name of this output in the service's response. "
            "Must be unique among the workflow's comfypack outputs."
        )
    else:
        tooltip = (
            "Name of this input field in the service's request. "
            "Must be unique among the workflow's comfypack inputs."
        )
    return io.String.Input("name", default=default, multiline=False, tooltip=tooltip)


def description_input() -> io.String.Input:
    """The ``description`` widget: documentation shown in the API schema."""
    return io.String.Input(
        "description",
        default="",
        multiline=True,
        tooltip="Human readable description of this field, shown in the service's API docs.",
    )


def filename_prefix_input() -> io.String.Input:
    """The ``filename_prefix`` widget of file-producing output nodes."""
    return io.String.Input(
        "filename_prefix",
        default="comfypack",
        tooltip=(
            "Prefix of the saved file name, relative to ComfyUI's output directory. "
            "May contain a subfolder ('comfypack/run') and ComfyUI's %date% style variables."
        ),
    )


# --------------------------------------------------------------------------
# Input files
# --------------------------------------------------------------------------

FileKind = Literal["image", "audio", "video", "file"]


def resolve_input_file(value: str) -> str:
    """Turn a file widget value into an absolute path.

    ``value`` is relative to ComfyUI's input directory (``"cat.png"``,
    ``"comfypack/cat.png"``) or carries ComfyUI's annotation
    (``"cat.png [input]"``, ``"x.png [output]"``, ``"x.png [temp]"``), which picks the
    base directory. Raises ``ValueError`` when the value is empty, absolute,
    or climbs out of its base directory with ``..``.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("no file name given")
    name, base_dir = folder_paths.annotated_filepath(value.strip())
    if base_dir is None:
        base_dir = folder_paths.get_input_directory()
    if os.path.isabs(name):
        raise ValueError(
            f"{value!r} is an absolute path; give a path relative to ComfyUI's input directory"
        )
    base_dir = os.path.abspath(base_dir)
    path = os.path.abspath(os.path.join(base_dir, name))
    if os.path.commonpath((base_dir, path)) != base_dir:
        raise ValueError(f"{value!r} points outside {base_dir}")
    return path


def check_input_file(value: str | None, kind: FileKind) -> bool | str:
    """``validate_inputs`` body for file-backed input nodes.

    Returns ``True`` or an error message that tells the user what to fix.
    Unlike ComfyUI's combo check, this accepts files in subfolders of the input
    directory (where comfypack uploads request files), which the combo
    widget's option list does not contain.
    """
    if value is None:
        # Linked instead of set by a widget: nothing to check before running.
        return True
    try:
        path = resolve_input_file(value)
    except ValueError as e:
        return f"Invalid {kind} {value!r}: {e}."
    if not os.path.isfile(path):
        return (
            f"Invalid {kind} {value!r}: no such file in ComfyUI's input directory "
            f"({path}). Upload it first, or fix the name."
        )
    return True


def list_input_files(content_types: list[str]) -> list[str]:
    """Sorted names of the top-level files of the input directory with one of ``content_types``.

    ``content_types`` are MIME major types ("image", "audio", "video"), the
    same filter ComfyUI's own LoadImage/LoadAudio/LoadVideo use.
    """
    input_dir = folder_paths.get_input_directory()
    try:
        entries = os.listdir(input_dir)
    except FileNotFoundError:
        return []
    files = [f for f in entries if os.path.isfile(os.path.join(input_dir, f))]
    return sorted(folder_paths.filter_files_content_types(files, content_types))


def file_digest(value: str | None) -> str:
    """SHA-256 of an input file's contents, as a cache fingerprint ("" without a file: the
    input's validation already refused it)."""
    if value is None:
        return ""
    digest = hashlib.sha256()
    with open(resolve_input_file(value), "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_stamp(value: str | None) -> str:
    """Modification time and size of an input file, a cheap fingerprint for large files."""
    if value is None:
        return ""
    st = os.stat(resolve_input_file(value))
    return f"{st.st_mtime_ns}:{st.st_size}"


# --------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------


def next_output_path(
    filename_prefix: str, extension: str, width: int = 0, height: int = 0
) -> tuple[str, ui.SavedResult]:
    """Reserve the next ``<prefix>_NNNNN_.<extension>`` name in ComfyUI's output directory.

    Returns the absolute path to write and the ``SavedResult``
    (``{"filename", "subfolder", "type": "output"}``) that the UI and
    ``/history`` report for it. ``extension`` is given without the dot; an
    empty one gives a name without extension.
    """
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
        filename_prefix, folder_paths.get_output_directory(), width, height
    )
    file = f"{filename}_{counter:05}_"
    if extension:
        file = f"{file}.{extension}"
    return os.path.join(folder, file), ui.SavedResult(file, subfolder, io.FolderType.output)


def _metadata_enabled() -> bool:
    from comfy.cli_args import args

    return not args.disable_metadata


def png_metadata(prompt: Any, extra_pnginfo: dict | None):
    """The ``PngInfo`` ComfyUI's SaveImage embeds (prompt and workflow), or None with --disable-metadata."""
    if not _metadata_enabled():
        return None
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        info.add_text(key, json.dumps(value))
    return info


def exif_metadata(image, prompt: Any, extra_pnginfo: dict | None):
    """EXIF for WebP/JPEG carrying the prompt and workflow, as ComfyUI's SaveAnimatedWEBP does."""
    exif = image.getexif()
    if not _metadata_enabled():
        return exif
    if prompt is not None:
        exif[0x0110] = f"prompt:{json.dumps(prompt)}"  # Model
    tag = 0x010F  # Make, then counting down
    for key, value in (extra_pnginfo or {}).items():
        exif[tag] = f"{key}:{json.dumps(value)}"
        tag -= 1
    return exif
