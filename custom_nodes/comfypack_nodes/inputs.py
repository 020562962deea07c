"""Typed input nodes: the request fields of a comfypack service.

Each node marks one value of the workflow as an API input. On the canvas it
simply passes its value through, so the workflow still runs from ComfyUI. When
the workflow is served, comfypack reads these nodes to build the request
schema and, per request, rewrites the node's value widget in the API-format
prompt before posting it to ComfyUI.

All input nodes share the first two widgets:

``name``
    the field's name in the API (single line);
``description``
    its documentation (multiline);

followed by the value widget and its constraints:

===================== ========================================== ==============
node id               widgets after name, description            outputs
===================== ========================================== ==============
ComfyPackInputString  default, max_length                        STRING
ComfyPackInputInt     default, min, max, step                    INT
ComfyPackInputFloat   default, min, max, step                    FLOAT
ComfyPackInputBoolean default                                    BOOLEAN
ComfyPackInputChoice  options, default                           * (any)
ComfyPackInputSeed    default                                    INT
ComfyPackInputImage   image                                      IMAGE, MASK
ComfyPackInputFile    file                                       STRING (path)
ComfyPackInputAudio   audio                                      AUDIO
ComfyPackInputVideo   video                                      VIDEO
===================== ========================================== ==============
"""

from __future__ import annotations

import math

from comfy_api.latest import io

from ._common import (
    FLOAT_LIMIT,
    INPUT_CATEGORY,
    INT64_MAX,
    INT64_MIN,
    SEED_MAX,
    check_input_file,
    description_input,
    file_digest,
    file_stamp,
    list_input_files,
    name_input,
    resolve_input_file,
)

__all__ = [
    "InputString",
    "InputInt",
    "InputFloat",
    "InputBoolean",
    "InputChoice",
    "InputSeed",
    "InputImage",
    "InputFile",
    "InputAudio",
    "InputVideo",
    "INPUT_NODES",
    "parse_options",
]


def _check_range(kind: str, default, minimum, maximum) -> bool | str:
    """Shared ``validate_inputs`` body of the Int and Float nodes."""
    if default is None or minimum is None or maximum is None:
        return True  # a widget was turned into a link; nothing to check up front
    if minimum > maximum:
        return f"min ({minimum}) is greater than max ({maximum}); swap them."
    if not minimum <= default <= maximum:
        return f"default {kind} {default} is outside [{minimum}, {maximum}]; change the default or widen the range."
    return True


class InputString(io.ComfyNode):
    """A text field."""

    NODE_ID = "ComfyPackInputString"
    DISPLAY_NAME = "ComfyPack String Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description="A text field of the service's request. Outputs the text unchanged.",
            inputs=[
                name_input("text"),
                description_input(),
                io.String.Input(
                    "default",
                    default="",
                    multiline=True,
                    tooltip="The text used on the canvas, and in the API when the request leaves the field out.",
                ),
                io.Int.Input(
                    "max_length",
                    default=0,
                    min=0,
                    max=INT64_MAX,
                    tooltip="Longest text the API accepts, in characters. 0 means unlimited.",
                ),
            ],
            outputs=[io.String.Output(tooltip="The text.")],
        )

    @classmethod
    def validate_inputs(
        cls, default: str | None = None, max_length: int | None = None
    ) -> bool | str:
        if default is None or max_length is None:
            return True
        if max_length < 0:
            return f"max_length must be 0 (unlimited) or positive, not {max_length}."
        if max_length and len(default) > max_length:
            return f"default is {len(default)} characters long, more than max_length {max_length}."
        return True

    @classmethod
    def execute(cls, name: str, description: str, default: str, max_length: int) -> io.NodeOutput:
        return io.NodeOutput(default)


class InputInt(io.ComfyNode):
    """An integer field with bounds and a step."""

    NODE_ID = "ComfyPackInputInt"
    DISPLAY_NAME = "ComfyPack Int Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        def widget(id_: str, default: int, tooltip: str) -> io.Int.Input:
            return io.Int.Input(id_, default=default, min=INT64_MIN, max=INT64_MAX, tooltip=tooltip)

        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description="An integer field of the service's request. Outputs the value unchanged.",
            inputs=[
                name_input("steps"),
                description_input(),
                widget(
                    "default",
                    0,
                    "The value used on the canvas, and in the API when the request leaves the field out.",
                ),
                widget("min", 0, "Smallest value the API accepts."),
                widget("max", 100, "Largest value the API accepts."),
                io.Int.Input(
                    "step",
                    default=1,
                    min=1,
                    max=INT64_MAX,
                    tooltip="Granularity shown to API clients (a hint; values in between are not rejected).",
                ),
            ],
            outputs=[io.Int.Output(tooltip="The integer.")],
        )

    @classmethod
    def validate_inputs(
        cls, default: int | None = None, min: int | None = None, max: int | None = None
    ) -> bool | str:
        for label, value in (("default", default), ("min", min), ("max", max)):
            if value is not None and not INT64_MIN <= value <= INT64_MAX:
                return f"{label} {value} does not fit a signed 64-bit integer."
        return _check_range("int", default, min, max)

    @classmethod
    def execute(
        cls, name: str, description: str, default: int, min: int, max: int, step: int
    ) -> io.NodeOutput:
        return io.NodeOutput(default)


class InputFloat(io.ComfyNode):
    """A floating point field with bounds and a step."""

    NODE_ID = "ComfyPackInputFloat"
    DISPLAY_NAME = "ComfyPack Float Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        def widget(id_: str, default: float, tooltip: str) -> io.Float.Input:
            # round=False: keep exactly the value typed (or set by comfypack), no snapping to step.
            return io.Float.Input(
                id_,
                default=default,
                min=-FLOAT_LIMIT,
                max=FLOAT_LIMIT,
                step=0.01,
                round=False,
                tooltip=tooltip,
            )

        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description="A number field of the service's request. Outputs the value unchanged.",
            inputs=[
                name_input("strength"),
                description_input(),
                widget(
                    "default",
                    0.0,
                    "The value used on the canvas, and in the API when the request leaves the field out.",
                ),
                widget("min", 0.0, "Smallest value the API accepts."),
                widget("max", 1.0, "Largest value the API accepts."),
                io.Float.Input(
                    "step",
                    default=0.01,
                    min=0.0,
                    max=FLOAT_LIMIT,
                    step=0.001,
                    round=False,
                    tooltip="Granularity shown to API clients (a hint; 0 means none).",
                ),
            ],
            outputs=[io.Float.Output(tooltip="The number.")],
        )

    @classmethod
    def validate_inputs(
        cls, default: float | None = None, min: float | None = None, max: float | None = None
    ) -> bool | str:
        for label, value in (("default", default), ("min", min), ("max", max)):
            if value is not None and not (
                math.isfinite(value) and -FLOAT_LIMIT <= value <= FLOAT_LIMIT
            ):
                return f"{label} must be a finite number within ±{FLOAT_LIMIT:g}, not {value}."
        return _check_range("float", default, min, max)

    @classmethod
    def execute(
        cls, name: str, description: str, default: float, min: float, max: float, step: float
    ) -> io.NodeOutput:
        return io.NodeOutput(default)


class InputBoolean(io.ComfyNode):
    """A true/false field."""

    NODE_ID = "ComfyPackInputBoolean"
    DISPLAY_NAME = "ComfyPack Boolean Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description="A true/false field of the service's request. Outputs the value unchanged.",
            inputs=[
                name_input("enabled"),
                description_input(),
                io.Boolean.Input(
                    "default",
                    default=False,
                    tooltip="The value used on the canvas, and in the API when the request leaves the field out.",
                ),
            ],
            outputs=[io.Boolean.Output(tooltip="The boolean.")],
        )

    @classmethod
    def execute(cls, name: str, description: str, default: bool) -> io.NodeOutput:
        return io.NodeOutput(default)


def parse_options(options: str) -> list[str]:
    """The choices of a Choice node: one per line, surrounding blanks stripped, empty lines dropped."""
    return [line.strip() for line in options.splitlines() if line.strip()]


class InputChoice(io.ComfyNode):
    """A field restricted to a fixed list of strings (an enum in the API)."""

    NODE_ID = "ComfyPackInputChoice"
    DISPLAY_NAME = "ComfyPack Choice Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description=(
                "A field of the service's request that takes one of a fixed list of strings. "
                "Its output connects to any input, including dropdowns (e.g. a sampler name or "
                "an upscale method): list exactly the values that dropdown offers."
            ),
            inputs=[
                name_input("mode"),
                description_input(),
                io.String.Input(
                    "options",
                    default="",
                    multiline=True,
                    tooltip="The allowed values, one per line.",
                ),
                io.String.Input(
                    "default",
                    default="",
                    tooltip="The value used on the canvas, and in the API when the request leaves the field out. Must be one of the options.",
                ),
            ],
            outputs=[io.AnyType.Output(display_name="choice", tooltip="The chosen string.")],
        )

    @classmethod
    def validate_inputs(cls, options: str | None = None, default: str | None = None) -> bool | str:
        if options is None or default is None:
            return True
        choices = parse_options(options)
        if not choices:
            return "options is empty; list the allowed values, one per line."
        if default.strip() not in choices:
            return f"default {default.strip()!r} is not one of the options {choices}."
        return True

    @classmethod
    def execute(cls, name: str, description: str, options: str, default: str) -> io.NodeOutput:
        return io.NodeOutput(default.strip())


class InputSeed(io.ComfyNode):
    """A random seed: an unsigned 64-bit integer the canvas re-rolls after each run."""

    NODE_ID = "ComfyPackInputSeed"
    DISPLAY_NAME = "ComfyPack Seed Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description="A seed field of the service's request (0 to 2**64-1). Outputs the value unchanged.",
            inputs=[
                name_input("seed"),
                description_input(),
                io.Int.Input(
                    "default",
                    default=0,
                    min=0,
                    max=SEED_MAX,
                    control_after_generate=True,
                    tooltip="The seed used on the canvas, and in the API when the request leaves the field out.",
                ),
            ],
            outputs=[io.Int.Output(tooltip="The seed.")],
        )

    @classmethod
    def execute(cls, name: str, description: str, default: int) -> io.NodeOutput:
        return io.NodeOutput(default)


class InputImage(io.ComfyNode):
    """An image upload field; loads like ComfyUI's Load Image."""

    NODE_ID = "ComfyPackInputImage"
    DISPLAY_NAME = "ComfyPack Image Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description=(
                "An image file of the service's request. Loads it like Load Image: the RGB image, "
                "and the inverted alpha channel as mask."
            ),
            inputs=[
                name_input("image"),
                description_input(),
                io.Combo.Input(
                    "image",
                    options=list_input_files(["image"]),
                    upload=io.UploadType.image,
                    tooltip="Image file in ComfyUI's input directory (subfolders allowed, e.g. 'comfypack/x.png').",
                ),
            ],
            outputs=[
                io.Image.Output(tooltip="The image, RGB."),
                io.Mask.Output(tooltip="1 - alpha; zeros when the image has no alpha channel."),
            ],
        )

    @classmethod
    def validate_inputs(cls, image: str | None = None) -> bool | str:
        return check_input_file(image, "image")

    @classmethod
    def fingerprint_inputs(cls, image: str | None = None, **_) -> str:
        return file_digest(image)

    @classmethod
    def execute(cls, name: str, description: str, image: str) -> io.NodeOutput:
        import nodes

        # LoadImage joins the (annotated) name to the input directory itself;
        # hand it the checked absolute path so both agree on the file.
        pixels, mask = nodes.LoadImage().load_image(resolve_input_file(image))
        return io.NodeOutput(pixels, mask)


class InputFile(io.ComfyNode):
    """A generic file upload field; outputs the file's path."""

    NODE_ID = "ComfyPackInputFile"
    DISPLAY_NAME = "ComfyPack File Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description="A file of the service's request, of any type. Outputs its absolute path for nodes that take a path.",
            inputs=[
                name_input("file"),
                description_input(),
                io.String.Input(
                    "file",
                    default="",
                    tooltip=(
                        "File name relative to ComfyUI's input directory, may include a subfolder "
                        "('comfypack/data.bin'); ComfyUI's 'name [input]' form is accepted too."
                    ),
                ),
            ],
            outputs=[io.String.Output(display_name="path", tooltip="Absolute path of the file.")],
        )

    @classmethod
    def validate_inputs(cls, file: str | None = None) -> bool | str:
        return check_input_file(file, "file")

    @classmethod
    def fingerprint_inputs(cls, file: str | None = None, **_) -> str:
        return file_stamp(file)

    @classmethod
    def execute(cls, name: str, description: str, file: str) -> io.NodeOutput:
        return io.NodeOutput(resolve_input_file(file))


class InputAudio(io.ComfyNode):
    """An audio upload field; loads like ComfyUI's Load Audio."""

    NODE_ID = "ComfyPackInputAudio"
    DISPLAY_NAME = "ComfyPack Audio Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description="An audio file of the service's request (or a video, whose sound track is used). Decodes it like Load Audio.",
            inputs=[
                name_input("audio"),
                description_input(),
                io.Combo.Input(
                    "audio",
                    options=list_input_files(["audio", "video"]),
                    upload=io.UploadType.audio,
                    tooltip="Audio file in ComfyUI's input directory (subfolders allowed, e.g. 'comfypack/x.flac').",
                ),
            ],
            outputs=[io.Audio.Output(tooltip="The decoded waveform and its sample rate.")],
        )

    @classmethod
    def validate_inputs(cls, audio: str | None = None) -> bool | str:
        return check_input_file(audio, "audio")

    @classmethod
    def fingerprint_inputs(cls, audio: str | None = None, **_) -> str:
        return file_digest(audio)

    @classmethod
    def execute(cls, name: str, description: str, audio: str) -> io.NodeOutput:
        from comfy_extras.nodes_audio import load

        waveform, sample_rate = load(resolve_input_file(audio))
        return io.NodeOutput({"waveform": waveform.unsqueeze(0), "sample_rate": sample_rate})


class InputVideo(io.ComfyNode):
    """A video upload field; loads like ComfyUI's Load Video (decoding is deferred to the consumer)."""

    NODE_ID = "ComfyPackInputVideo"
    DISPLAY_NAME = "ComfyPack Video Input"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=INPUT_CATEGORY,
            description="A video file of the service's request. Outputs it like Load Video.",
            inputs=[
                name_input("video"),
                description_input(),
                io.Combo.Input(
                    "video",
                    options=list_input_files(["video"]),
                    upload=io.UploadType.video,
                    tooltip="Video file in ComfyUI's input directory (subfolders allowed, e.g. 'comfypack/x.mp4').",
                ),
            ],
            outputs=[
                io.Video.Output(
                    tooltip="The video; frames and audio are decoded by the node that uses it."
                )
            ],
        )

    @classmethod
    def validate_inputs(cls, video: str | None = None) -> bool | str:
        return check_input_file(video, "video")

    @classmethod
    def fingerprint_inputs(cls, video: str | None = None, **_) -> str:
        # Videos can be large; modification time and size instead of a hash.
        return file_stamp(video)

    @classmethod
    def execute(cls, name: str, description: str, video: str) -> io.NodeOutput:
        from comfy_api.latest import InputImpl

        return io.NodeOutput(InputImpl.VideoFromFile(resolve_input_file(video)))


INPUT_NODES: tuple[type[io.ComfyNode], ...] = (
    InputString,
    InputInt,
    InputFloat,
    InputBoolean,
    InputChoice,
    InputSeed,
    InputImage,
    InputFile,
    InputAudio,
    InputVideo,
)
"""Every input node, in menu order."""
