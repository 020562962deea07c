"""Typed output nodes: the response fields of a comfypack service.

Each node marks one value of the workflow as an API output, named by its
``name`` widget. The nodes are ComfyUI output nodes: they report their value
as the node's UI result, which ComfyUI sends over the websocket
(``executed``) and keeps in ``/history/{prompt_id}``; comfypack reads it from
there. File results are written under ComfyUI's output directory and
reported as ``{"filename", "subfolder", "type": "output"}`` entries, the shape
the canvas uses for previews.

===================== ====================================================
node id               UI result
===================== ====================================================
ComfyPackOutputImage  {"images": [saved, ...]}
ComfyPackOutputText   {"text": [value]}
ComfyPackOutputNumber {"number": [value]}
ComfyPackOutputJSON   {"json": [value]}
ComfyPackOutputFile   {"files": [saved]}
ComfyPackOutputAudio  {"audio": [saved, ...]}
ComfyPackOutputVideo  {"images": [saved], "animated": [true]}
===================== ====================================================

Output nodes never come from ComfyUI's cache: their ``fingerprint_inputs``
returns NaN, which never equals itself, so an identical prompt executes them
again and writes fresh files.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
from typing import Any

import folder_paths
from comfy_api.latest import io, ui

from ._common import (
    OUTPUT_CATEGORY,
    exif_metadata,
    filename_prefix_input,
    name_input,
    next_output_path,
    png_metadata,
)

__all__ = [
    "OutputImage",
    "OutputText",
    "OutputNumber",
    "OutputJSON",
    "OutputFile",
    "OutputAudio",
    "OutputVideo",
    "OUTPUT_NODES",
]

IMAGE_FORMATS = ("png", "webp", "jpeg")
AUDIO_FORMATS = ("flac", "mp3", "opus")
"""The containers ComfyUI's AudioSaveHelper can write."""


def _check_option(
    label: str, value: str | None, options: list[str] | tuple[str, ...]
) -> bool | str:
    """``validate_inputs`` body for a COMBO widget.

    ComfyUI 0.3.75 does not check V3 COMBO values against their options when a
    prompt is queued; doing it here turns a typo into a 400 from ``/prompt``
    instead of a failure halfway through the run.
    """
    if value is None or value in options:
        return True
    return f"{label} {value!r} is not supported; use one of {list(options)}."


class _OutputNode(io.ComfyNode):
    """Base of the output nodes: always executed, never served from cache."""

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> float:
        return float("nan")


class OutputImage(_OutputNode):
    """Saves an image batch as files of the response."""

    NODE_ID = "ComfyPackOutputImage"
    DISPLAY_NAME = "ComfyPack Image Output"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=OUTPUT_CATEGORY,
            description="An image output of the service. Saves every image of the batch to ComfyUI's output directory.",
            inputs=[
                io.Image.Input("images", tooltip="The images to return."),
                name_input("image", output=True),
                io.Combo.Input(
                    "format",
                    options=list(IMAGE_FORMATS),
                    default="png",
                    tooltip="File format of the saved images.",
                ),
                io.Int.Input(
                    "quality",
                    default=95,
                    min=1,
                    max=100,
                    tooltip="Quality for webp and jpeg (ignored for png). 100 saves webp lossless.",
                ),
                filename_prefix_input(),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, format: str | None = None) -> bool | str:
        return _check_option("format", format, IMAGE_FORMATS)

    @classmethod
    def execute(
        cls, images, name: str, format: str, quality: int, filename_prefix: str
    ) -> io.NodeOutput:
        import numpy as np
        from PIL import Image

        if format not in IMAGE_FORMATS:
            raise ValueError(
                f"Output {name!r}: unknown image format {format!r}; use one of {list(IMAGE_FORMATS)}."
            )
        extension = "jpg" if format == "jpeg" else format
        prompt, extra = cls.hidden.prompt, cls.hidden.extra_pnginfo
        results = []
        for index, tensor in enumerate(images):
            height, width = tensor.shape[0], tensor.shape[1]
            prefix = filename_prefix.replace("%batch_num%", str(index))
            path, saved = next_output_path(prefix, extension, width, height)
            pixels = np.clip(255.0 * tensor.cpu().numpy(), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            if format == "png":
                image.save(path, pnginfo=png_metadata(prompt, extra), compress_level=4)
            elif format == "webp":
                image.save(
                    path,
                    exif=exif_metadata(image, prompt, extra),
                    lossless=quality == 100,
                    quality=quality,
                    method=4,
                )
            else:
                # JPEG has neither alpha nor room (64 KiB of EXIF) for a workflow: no metadata.
                image.convert("RGB").save(path, quality=quality)
            results.append(saved)
        return io.NodeOutput(ui=ui.SavedImages(results))


class OutputText(_OutputNode):
    """Returns a string."""

    NODE_ID = "ComfyPackOutputText"
    DISPLAY_NAME = "ComfyPack Text Output"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=OUTPUT_CATEGORY,
            description="A text output of the service.",
            inputs=[
                io.String.Input("value", force_input=True, tooltip="The text to return."),
                name_input("text", output=True),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, value: str, name: str) -> io.NodeOutput:
        if not isinstance(value, str):
            raise TypeError(f"Output {name!r} expects a string, got {type(value).__name__}.")
        return io.NodeOutput(ui={"text": [value]})


class OutputNumber(_OutputNode):
    """Returns an int, a float or a bool."""

    NODE_ID = "ComfyPackOutputNumber"
    DISPLAY_NAME = "ComfyPack Number Output"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=OUTPUT_CATEGORY,
            description="A number output of the service: accepts INT, FLOAT or BOOLEAN.",
            inputs=[
                io.AnyType.Input("value", tooltip="The number to return (INT, FLOAT or BOOLEAN)."),
                name_input("number", output=True),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, value: Any, name: str) -> io.NodeOutput:
        return io.NodeOutput(ui={"number": [_as_number(value, name)]})


def _as_number(value: Any, name: str) -> int | float | bool:
    """Plain Python int/float/bool for a JSON response; numpy scalars are converted."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"Output {name!r} got {number}, which JSON cannot represent.")
        return number
    raise TypeError(
        f"Output {name!r} expects an INT, FLOAT or BOOLEAN, got {type(value).__name__}; "
        "use the JSON output for other values."
    )


class OutputJSON(_OutputNode):
    """Returns any JSON-serializable value."""

    NODE_ID = "ComfyPackOutputJSON"
    DISPLAY_NAME = "ComfyPack JSON Output"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=OUTPUT_CATEGORY,
            description=(
                "A structured output of the service: any JSON-serializable value "
                "(dict, list, str, number, bool, None; tuples become lists)."
            ),
            inputs=[
                io.AnyType.Input("value", tooltip="The value to return."),
                name_input("data", output=True),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, value: Any, name: str) -> io.NodeOutput:
        try:
            # The round trip checks serializability and turns tuples into lists.
            plain = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"Output {name!r} got a value that is not JSON-serializable ({type(value).__name__}): {e}. "
                "Connect a value made of dicts, lists, strings, finite numbers, booleans and None."
            ) from e
        return io.NodeOutput(ui={"json": [plain]})


class OutputFile(_OutputNode):
    """Returns a file some node wrote, by copying it to the output directory."""

    NODE_ID = "ComfyPackOutputFile"
    DISPLAY_NAME = "ComfyPack File Output"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=OUTPUT_CATEGORY,
            description="A file output of the service: copies the file at the given path into ComfyUI's output directory.",
            inputs=[
                io.String.Input("path", force_input=True, tooltip="Path of the file to return."),
                name_input("file", output=True),
                filename_prefix_input(),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, path: str, name: str, filename_prefix: str) -> io.NodeOutput:
        if not isinstance(path, str) or not os.path.isfile(path):
            raise FileNotFoundError(
                f"Output {name!r}: {path!r} is not a file; the node feeding it must produce a file path."
            )
        # Only files ComfyUI itself holds may leave the server: a path typed by an API caller
        # must never turn this node into a reader of arbitrary files.
        real = os.path.realpath(path)
        allowed = [
            os.path.realpath(d)
            for d in (
                folder_paths.get_input_directory(),
                folder_paths.get_output_directory(),
                folder_paths.get_temp_directory(),
            )
        ]
        if not any(os.path.commonpath([real, d]) == d for d in allowed):
            raise PermissionError(
                f"Output {name!r}: {path!r} is outside ComfyUI's input, output and temp directories; "
                "only files there can be returned."
            )
        extension = os.path.splitext(path)[1].lstrip(".")
        target, saved = next_output_path(filename_prefix, extension)
        shutil.copyfile(path, target)
        return io.NodeOutput(ui={"files": [saved]})


class OutputAudio(_OutputNode):
    """Saves audio as files of the response."""

    NODE_ID = "ComfyPackOutputAudio"
    DISPLAY_NAME = "ComfyPack Audio Output"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=OUTPUT_CATEGORY,
            description="An audio output of the service. Saves each clip of the batch to ComfyUI's output directory.",
            inputs=[
                io.Audio.Input("audio", tooltip="The audio to return."),
                name_input("audio", output=True),
                io.Combo.Input(
                    "format",
                    options=list(AUDIO_FORMATS),
                    default="flac",
                    tooltip="File format (flac is lossless).",
                ),
                filename_prefix_input(),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, format: str | None = None) -> bool | str:
        return _check_option("format", format, AUDIO_FORMATS)

    @classmethod
    def execute(cls, audio: dict, name: str, format: str, filename_prefix: str) -> io.NodeOutput:
        if format not in AUDIO_FORMATS:
            raise ValueError(
                f"Output {name!r}: unknown audio format {format!r}; use one of {list(AUDIO_FORMATS)}."
            )
        return io.NodeOutput(
            ui=ui.AudioSaveHelper.get_save_audio_ui(audio, filename_prefix, cls, format=format)
        )


class OutputVideo(_OutputNode):
    """Saves a video as a file of the response."""

    NODE_ID = "ComfyPackOutputVideo"
    DISPLAY_NAME = "ComfyPack Video Output"

    @classmethod
    def define_schema(cls) -> io.Schema:
        from comfy_api.latest import Types

        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=OUTPUT_CATEGORY,
            description="A video output of the service. Saves it to ComfyUI's output directory, like Save Video.",
            inputs=[
                io.Video.Input("video", tooltip="The video to return."),
                name_input("video", output=True),
                io.Combo.Input(
                    "format",
                    options=Types.VideoContainer.as_input(),
                    default="auto",
                    tooltip="Container; auto keeps the source's when it can, else mp4.",
                ),
                io.Combo.Input(
                    "codec",
                    options=Types.VideoCodec.as_input(),
                    default="auto",
                    tooltip="Video codec; auto copies the source's streams when it can, else encodes h264.",
                ),
                filename_prefix_input(),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, format: str | None = None, codec: str | None = None) -> bool | str:
        from comfy_api.latest import Types

        checked = _check_option("format", format, Types.VideoContainer.as_input())
        if checked is not True:
            return checked
        return _check_option("codec", codec, Types.VideoCodec.as_input())

    @classmethod
    def execute(
        cls, video, name: str, format: str, codec: str, filename_prefix: str
    ) -> io.NodeOutput:
        from comfy.cli_args import args
        from comfy_api.latest import Types

        width, height = video.get_dimensions()
        path, saved = next_output_path(
            filename_prefix, Types.VideoContainer.get_extension(format), width, height
        )
        metadata = None
        if not args.disable_metadata:
            metadata = dict(cls.hidden.extra_pnginfo or {})
            if cls.hidden.prompt is not None:
                metadata["prompt"] = cls.hidden.prompt
        video.save_to(path, format=format, codec=codec, metadata=metadata or None)
        return io.NodeOutput(ui=ui.PreviewVideo([saved]))


OUTPUT_NODES: tuple[type[io.ComfyNode], ...] = (
    OutputImage,
    OutputText,
    OutputNumber,
    OutputJSON,
    OutputFile,
    OutputAudio,
    OutputVideo,
)
"""Every output node, in menu order."""
