"""The comfypack node package inside a real, headless ComfyUI.

Uses the ``comfyui`` fixture (tests/integration/conftest.py): a running ComfyUI
with ``custom_nodes/comfypack_nodes`` registered, reachable at ``comfyui.url``.
Everything goes through ComfyUI's HTTP API with sync ``httpx``: the node
contract is read from ``/object_info``; workflows are exercised by uploading
files (``/upload/image``), posting API-format prompts (``/prompt``), polling
``/history/{id}`` and downloading results (``/view``). Test media are built with
the standard library only (PNG via zlib, WAV via ``wave``).
"""

from __future__ import annotations

import io
import math
import struct
import time
import uuid
import wave
import zlib
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

INPUT_CATEGORY = "comfypack/inputs"
OUTPUT_CATEGORY = "comfypack/outputs"

# node id -> (required widget/input names in order, output types)
INPUT_NODES: dict[str, tuple[list[str], list[str]]] = {
    "ComfyPackInputString": (["name", "description", "default", "max_length"], ["STRING"]),
    "ComfyPackInputInt": (["name", "description", "default", "min", "max", "step"], ["INT"]),
    "ComfyPackInputFloat": (["name", "description", "default", "min", "max", "step"], ["FLOAT"]),
    "ComfyPackInputBoolean": (["name", "description", "default"], ["BOOLEAN"]),
    "ComfyPackInputChoice": (["name", "description", "options", "default"], ["*"]),
    "ComfyPackInputSeed": (["name", "description", "default"], ["INT"]),
    "ComfyPackInputImage": (["name", "description", "image"], ["IMAGE", "MASK"]),
    "ComfyPackInputFile": (["name", "description", "file"], ["STRING"]),
    "ComfyPackInputAudio": (["name", "description", "audio"], ["AUDIO"]),
    "ComfyPackInputVideo": (["name", "description", "video"], ["VIDEO"]),
}
OUTPUT_NODES: dict[str, list[str]] = {
    "ComfyPackOutputImage": ["images", "name", "format", "quality", "filename_prefix"],
    "ComfyPackOutputText": ["value", "name"],
    "ComfyPackOutputNumber": ["value", "name"],
    "ComfyPackOutputJSON": ["value", "name"],
    "ComfyPackOutputFile": ["path", "name", "filename_prefix"],
    "ComfyPackOutputAudio": ["audio", "name", "format", "filename_prefix"],
    "ComfyPackOutputVideo": ["video", "name", "format", "codec", "filename_prefix"],
}

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PROMPT_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


@pytest.fixture
def http(comfyui) -> httpx.Client:
    with httpx.Client(base_url=comfyui.url, timeout=60.0) as client:
        yield client


def node_info(http: httpx.Client, node_id: str) -> dict[str, Any]:
    response = http.get(f"/object_info/{node_id}")
    response.raise_for_status()
    info = response.json()
    assert node_id in info, f"{node_id} is not registered; is custom_nodes/comfypack_nodes loaded?"
    return info[node_id]


def widget(info: dict[str, Any], name: str) -> tuple[Any, dict[str, Any]]:
    io_type, options = info["input"]["required"][name]
    return io_type, options


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def submit(http: httpx.Client, prompt: dict[str, Any]) -> httpx.Response:
    return http.post("/prompt", json={"prompt": prompt, "client_id": str(uuid.uuid4())})


def run_prompt(
    http: httpx.Client, prompt: dict[str, Any], *, succeed: bool = True
) -> dict[str, Any]:
    """Queue ``prompt``, wait for it, and return its ``/history`` entry."""
    response = submit(http, prompt)
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    deadline = time.monotonic() + PROMPT_TIMEOUT_S
    while time.monotonic() < deadline:
        history = http.get(f"/history/{prompt_id}").json()
        if prompt_id in history:
            entry = history[prompt_id]
            if succeed:
                assert entry["status"]["status_str"] == "success", entry["status"]
            return entry
        time.sleep(0.1)
    raise TimeoutError(f"prompt {prompt_id} did not finish within {PROMPT_TIMEOUT_S}s")


def execution_error(entry: dict[str, Any]) -> str:
    assert entry["status"]["status_str"] == "error", entry["status"]
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert errors, entry["status"]
    return errors[0]["exception_message"]


def upload(
    http: httpx.Client, filename: str, data: bytes, subfolder: str = "comfypack-test"
) -> str:
    """Put a file in ComfyUI's input directory; return the widget value naming it."""
    response = http.post(
        "/upload/image",
        data={"subfolder": subfolder, "type": "input", "overwrite": "true"},
        files={"image": (filename, data, "application/octet-stream")},
    )
    response.raise_for_status()
    saved = response.json()
    return f"{saved['subfolder']}/{saved['name']}" if saved["subfolder"] else saved["name"]


def download(http: httpx.Client, saved: dict[str, str]) -> bytes:
    assert set(saved) == {"filename", "subfolder", "type"}, saved
    assert saved["type"] == "output"
    response = http.get("/view", params=saved)
    response.raise_for_status()
    return response.content


def unique_prefix() -> str:
    return f"comfypack-test/{uuid.uuid4().hex[:8]}"


def png_bytes(pixels: list[list[tuple[int, int, int]]]) -> bytes:
    """An 8-bit RGB PNG, unfiltered."""
    height, width = len(pixels), len(pixels[0])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def decode_png_rgb(data: bytes) -> list[list[tuple[int, int, int]]]:
    """Decode an 8-bit, non-interlaced RGB PNG (what the image output writes for RGB input)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, color, interlace) == (8, 2, 0), "expected 8-bit RGB, non-interlaced"
    raw, bpp, stride = zlib.decompress(idat), 3, width * 3
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    return [[tuple(row[x * 3 : x * 3 + 3]) for x in range(width)] for row in rows]


def wav_bytes(seconds: float = 0.25, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = int(seconds * rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                for i in range(frames)
            )
        )
    return buffer.getvalue()


TEST_PIXELS = [
    [((x * 60 + y * 7) % 256, (y * 80) % 256, (x * y * 13) % 256) for x in range(4)]
    for y in range(3)
]


# --------------------------------------------------------------------------
# /object_info: the contract other comfypack modules rely on
# --------------------------------------------------------------------------


def test_all_nodes_registered(http: httpx.Client) -> None:
    info = http.get("/object_info").json()
    # (the test-only node set, category comfypack/testing, is loaded in tests too)
    registered = {
        name
        for name, spec in info.items()
        if name.startswith("ComfyPack") and spec["category"] != "comfypack/testing"
    }
    assert registered == set(INPUT_NODES) | set(OUTPUT_NODES)


@pytest.mark.parametrize("node_id", sorted(INPUT_NODES))
def test_input_node_shape(http: httpx.Client, node_id: str) -> None:
    info = node_info(http, node_id)
    widgets, outputs = INPUT_NODES[node_id]
    assert info["category"] == INPUT_CATEGORY
    assert info["input_order"]["required"] == widgets
    assert info["output"] == outputs
    assert info["output_node"] is False
    assert info["description"]

    name_type, name_opts = widget(info, "name")
    assert name_type == "STRING" and name_opts["multiline"] is False and name_opts["default"]
    description_type, description_opts = widget(info, "description")
    assert (
        description_type == "STRING"
        and description_opts["multiline"] is True
        and description_opts["default"] == ""
    )


@pytest.mark.parametrize("node_id", sorted(OUTPUT_NODES))
def test_output_node_shape(http: httpx.Client, node_id: str) -> None:
    info = node_info(http, node_id)
    assert info["category"] == OUTPUT_CATEGORY
    assert info["input_order"]["required"] == OUTPUT_NODES[node_id]
    assert info["output"] == []
    assert info["output_node"] is True
    assert info["description"]
    name_type, name_opts = widget(info, "name")
    assert name_type == "STRING" and name_opts["multiline"] is False and name_opts["default"]
    if "filename_prefix" in OUTPUT_NODES[node_id]:
        kind, opts = widget(info, "filename_prefix")
        assert kind == "STRING" and opts["default"] == "comfypack"


def test_string_input_widgets(http: httpx.Client) -> None:
    info = node_info(http, "ComfyPackInputString")
    assert widget(info, "default")[0] == "STRING"
    assert widget(info, "default")[1]["multiline"] is True
    assert widget(info, "default")[1]["default"] == ""
    kind, opts = widget(info, "max_length")
    assert kind == "INT" and opts["min"] == 0 and opts["default"] == 0


def test_int_input_widgets(http: httpx.Client) -> None:
    info = node_info(http, "ComfyPackInputInt")
    for name in ("default", "min", "max"):
        kind, opts = widget(info, name)
        assert kind == "INT" and opts["min"] == INT64_MIN and opts["max"] == INT64_MAX
    assert (
        widget(info, "min")[1]["default"]
        <= widget(info, "default")[1]["default"]
        <= widget(info, "max")[1]["default"]
    )
    kind, opts = widget(info, "step")
    assert kind == "INT" and opts["min"] == 1 and opts["default"] == 1


def test_float_input_widgets(http: httpx.Client) -> None:
    info = node_info(http, "ComfyPackInputFloat")
    defaults = {}
    for name in ("default", "min", "max", "step"):
        kind, opts = widget(info, name)
        assert kind == "FLOAT"
        assert opts.get("round", 0.0) is False or opts["round"] <= 1e-6, f"{name} would snap values"
        defaults[name] = opts["default"]
    assert defaults == {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01}
    assert widget(info, "step")[1]["min"] == 0


def test_boolean_input_widgets(http: httpx.Client) -> None:
    info = node_info(http, "ComfyPackInputBoolean")
    kind, opts = widget(info, "default")
    assert kind == "BOOLEAN" and isinstance(opts["default"], bool)


def test_choice_input_widgets(http: httpx.Client) -> None:
    info = node_info(http, "ComfyPackInputChoice")
    assert (
        widget(info, "options")[0] == "STRING" and widget(info, "options")[1]["multiline"] is True
    )
    assert widget(info, "default")[0] == "STRING"
    assert info["output"] == ["*"]


def test_seed_input_widgets(http: httpx.Client) -> None:
    info = node_info(http, "ComfyPackInputSeed")
    kind, opts = widget(info, "default")
    assert kind == "INT"
    assert opts["min"] == 0 and opts["max"] == 0xFFFFFFFFFFFFFFFF
    assert opts["control_after_generate"] is True


@pytest.mark.parametrize(
    ("node_id", "widget_name", "upload_flag"),
    [
        ("ComfyPackInputImage", "image", "image_upload"),
        ("ComfyPackInputAudio", "audio", "audio_upload"),
        ("ComfyPackInputVideo", "video", "video_upload"),
    ],
)
def test_media_inputs_are_upload_combos(
    http: httpx.Client, node_id: str, widget_name: str, upload_flag: str
) -> None:
    kind, opts = widget(node_info(http, node_id), widget_name)
    assert kind == "COMBO"
    assert isinstance(opts["options"], list)
    assert opts[upload_flag] is True


def test_file_input_is_a_string(http: httpx.Client) -> None:
    assert widget(node_info(http, "ComfyPackInputFile"), "file")[0] == "STRING"


def test_output_widgets(http: httpx.Client) -> None:
    image = node_info(http, "ComfyPackOutputImage")
    assert widget(image, "images")[0] == "IMAGE"
    assert widget(image, "format")[0] == "COMBO"
    assert widget(image, "format")[1]["options"] == ["png", "webp", "jpeg"]
    assert widget(image, "format")[1]["default"] == "png"
    _, quality = widget(image, "quality")
    assert (quality["min"], quality["max"], quality["default"]) == (1, 100, 95)

    for node_id, socket in (("ComfyPackOutputText", "value"), ("ComfyPackOutputFile", "path")):
        kind, opts = widget(node_info(http, node_id), socket)
        assert kind == "STRING" and opts["forceInput"] is True
    for node_id in ("ComfyPackOutputNumber", "ComfyPackOutputJSON"):
        assert widget(node_info(http, node_id), "value")[0] == "*"

    audio = node_info(http, "ComfyPackOutputAudio")
    assert widget(audio, "audio")[0] == "AUDIO"
    assert widget(audio, "format")[1]["options"] == ["flac", "mp3", "opus"]
    assert widget(audio, "format")[1]["default"] == "flac"

    video = node_info(http, "ComfyPackOutputVideo")
    assert widget(video, "video")[0] == "VIDEO"
    assert (
        "mp4" in widget(video, "format")[1]["options"]
        and widget(video, "format")[1]["default"] == "auto"
    )
    assert (
        "h264" in widget(video, "codec")[1]["options"]
        and widget(video, "codec")[1]["default"] == "auto"
    )


def test_web_extension_is_served(http: httpx.Client) -> None:
    extensions = http.get("/extensions").json()
    assert any(path.endswith("/comfypack.js") for path in extensions), extensions


# --------------------------------------------------------------------------
# Running workflows
# --------------------------------------------------------------------------


def test_image_round_trip_inverts_and_always_reexecutes(http: httpx.Client) -> None:
    image = upload(http, f"{uuid.uuid4().hex}.png", png_bytes(TEST_PIXELS))
    prompt = {
        "1": node("ComfyPackInputImage", name="image", description="", image=image),
        "2": node("ImageInvert", image=["1", 0]),
        "3": node(
            "ComfyPackOutputImage",
            images=["2", 0],
            name="out",
            format="png",
            quality=95,
            filename_prefix=unique_prefix(),
        ),
    }
    first = run_prompt(http, prompt)["outputs"]["3"]
    assert list(first) == ["images"] and len(first["images"]) == 1
    got = decode_png_rgb(download(http, first["images"][0]))
    for got_row, src_row in zip(got, TEST_PIXELS, strict=True):
        for got_px, src_px in zip(got_row, src_row, strict=True):
            # ComfyUI converts with float math and truncates: off by at most one.
            assert all(abs(g - (255 - s)) <= 1 for g, s in zip(got_px, src_px, strict=True)), (
                got_px,
                src_px,
            )

    # An identical prompt: the output node is not served from cache, it writes a new file.
    second = run_prompt(http, prompt)["outputs"]["3"]
    assert second["images"][0]["filename"] != first["images"][0]["filename"]


@pytest.mark.parametrize(("fmt", "magic"), [("webp", b"RIFF"), ("jpeg", b"\xff\xd8")])
def test_image_output_formats(http: httpx.Client, fmt: str, magic: bytes) -> None:
    image = upload(http, f"{uuid.uuid4().hex}.png", png_bytes(TEST_PIXELS))
    prompt = {
        "1": node("ComfyPackInputImage", name="image", description="", image=image),
        "2": node(
            "ComfyPackOutputImage",
            images=["1", 0],
            name="out",
            format=fmt,
            quality=90,
            filename_prefix=unique_prefix(),
        ),
    }
    saved = run_prompt(http, prompt)["outputs"]["2"]["images"][0]
    assert download(http, saved).startswith(magic)


def test_scalar_inputs_reach_outputs(http: httpx.Client) -> None:
    image = upload(http, f"{uuid.uuid4().hex}.png", png_bytes(TEST_PIXELS))
    prompt = {
        "1": node(
            "ComfyPackInputString", name="text", description="", default="hello", max_length=0
        ),
        "2": node("StringConcatenate", string_a=["1", 0], string_b="world", delimiter=", "),
        "3": node("ComfyPackOutputText", value=["2", 0], name="text"),
        "4": node(
            "ComfyPackInputInt", name="steps", description="", default=7, min=0, max=10, step=1
        ),
        "5": node("ComfyPackOutputNumber", value=["4", 0], name="steps"),
        "6": node(
            "ComfyPackInputFloat",
            name="cfg",
            description="",
            default=0.123456789,
            min=0.0,
            max=1.0,
            step=0.01,
        ),
        "7": node("ComfyPackOutputNumber", value=["6", 0], name="cfg"),
        "8": node("ComfyPackInputBoolean", name="flag", description="", default=True),
        "9": node("ComfyPackOutputNumber", value=["8", 0], name="flag"),
        "10": node("ComfyPackInputSeed", name="seed", description="", default=0xFFFFFFFFFFFFFFFF),
        "11": node("ComfyPackOutputJSON", value=["10", 0], name="seed"),
        "12": node(
            "ComfyPackInputChoice",
            name="method",
            description="",
            options="bilinear\n nearest-exact \narea",
            default="nearest-exact ",
        ),
        "13": node("ComfyPackOutputJSON", value=["12", 0], name="method"),
        # The choice drives a COMBO input of a core node.
        "14": node("ComfyPackInputImage", name="image", description="", image=image),
        "15": node(
            "ImageScale",
            image=["14", 0],
            upscale_method=["12", 0],
            width=8,
            height=6,
            crop="disabled",
        ),
        "16": node(
            "ComfyPackOutputImage",
            images=["15", 0],
            name="scaled",
            format="png",
            quality=95,
            filename_prefix=unique_prefix(),
        ),
    }
    outputs = run_prompt(http, prompt)["outputs"]
    assert outputs["3"] == {"text": ["hello, world"]}
    assert outputs["5"] == {"number": [7]}
    assert outputs["7"] == {"number": [0.123456789]}
    assert outputs["9"] == {"number": [True]}
    assert outputs["11"] == {"json": [0xFFFFFFFFFFFFFFFF]}
    assert outputs["13"] == {"json": ["nearest-exact"]}
    scaled = decode_png_rgb(download(http, outputs["16"]["images"][0]))
    assert (len(scaled[0]), len(scaled)) == (8, 6)


def test_file_round_trip_is_byte_identical(http: httpx.Client) -> None:
    payload = bytes(range(256)) * 20
    name = upload(http, f"{uuid.uuid4().hex}.bin", payload)
    prompt = {
        "1": node("ComfyPackInputFile", name="file", description="", file=name),
        "2": node(
            "ComfyPackOutputFile", path=["1", 0], name="file", filename_prefix=unique_prefix()
        ),
    }
    outputs = run_prompt(http, prompt)["outputs"]
    saved = outputs["2"]["files"][0]
    assert saved["filename"].endswith(".bin")
    assert download(http, saved) == payload


def test_audio_round_trip(http: httpx.Client) -> None:
    name = upload(http, f"{uuid.uuid4().hex}.wav", wav_bytes())
    prompt = {
        "1": node("ComfyPackInputAudio", name="audio", description="", audio=name),
        "2": node("AudioAdjustVolume", audio=["1", 0], volume=-6),
        "3": node(
            "ComfyPackOutputAudio",
            audio=["2", 0],
            name="audio",
            format="flac",
            filename_prefix=unique_prefix(),
        ),
    }
    outputs = run_prompt(http, prompt)["outputs"]
    assert list(outputs["3"]) == ["audio"]
    assert download(http, outputs["3"]["audio"][0]).startswith(b"fLaC")


def test_video_round_trip(http: httpx.Client) -> None:
    image = upload(http, f"{uuid.uuid4().hex}.png", png_bytes([[(200, 30, 90)] * 16] * 16))
    make = {
        "1": node("ComfyPackInputImage", name="image", description="", image=image),
        "2": node("RepeatImageBatch", image=["1", 0], amount=4),
        "3": node("CreateVideo", images=["2", 0], fps=8.0),
        "4": node(
            "ComfyPackOutputVideo",
            video=["3", 0],
            name="video",
            format="mp4",
            codec="h264",
            filename_prefix=unique_prefix(),
        ),
    }
    ui = run_prompt(http, make)["outputs"]["4"]
    assert ui["animated"] == [True] and len(ui["images"]) == 1
    saved = ui["images"][0]
    assert saved["filename"].endswith(".mp4")
    assert download(http, saved)[4:8] == b"ftyp"

    # Feed the result back in through the video input (ComfyUI's "[output]" annotation).
    annotated = f"{saved['subfolder']}/{saved['filename']} [output]"
    reuse = {
        "1": node("ComfyPackInputVideo", name="video", description="", video=annotated),
        "2": node("GetVideoComponents", video=["1", 0]),
        "3": node("ComfyPackOutputNumber", value=["2", 2], name="fps"),
        "4": node(
            "ComfyPackOutputVideo",
            video=["1", 0],
            name="video",
            format="auto",
            codec="auto",
            filename_prefix=unique_prefix(),
        ),
    }
    outputs = run_prompt(http, reuse)["outputs"]
    assert outputs["3"] == {"number": [8.0]}
    assert outputs["4"]["images"][0]["filename"].endswith(".mp4")


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_invalid_widget_values_fail_validation(http: httpx.Client) -> None:
    prompt = {
        "1": node(
            "ComfyPackInputInt", name="steps", description="", default=11, min=0, max=10, step=1
        ),
        "2": node("ComfyPackOutputNumber", value=["1", 0], name="steps"),
        "3": node("ComfyPackInputChoice", name="mode", description="", options="a\nb", default="c"),
        "4": node("ComfyPackOutputJSON", value=["3", 0], name="mode"),
        "5": node("ComfyPackInputFile", name="file", description="", file="../../../etc/passwd"),
        "6": node(
            "ComfyPackOutputFile", path=["5", 0], name="file", filename_prefix=unique_prefix()
        ),
        "7": node(
            "ComfyPackInputImage",
            name="image",
            description="",
            image="comfypack-test/does-not-exist.png",
        ),
        "8": node(
            "ComfyPackOutputImage",
            images=["7", 0],
            name="image",
            format="png",
            quality=95,
            filename_prefix=unique_prefix(),
        ),
        "9": node(
            "ComfyPackInputString", name="text", description="", default="too long", max_length=3
        ),
        "10": node("ComfyPackOutputText", value=["9", 0], name="text"),
    }
    response = submit(http, prompt)
    assert response.status_code == 400
    node_errors = response.json()["node_errors"]
    assert set(node_errors) == {"1", "3", "5", "7", "9"}
    details = {
        nid: " ".join(e["details"] for e in errs["errors"]) for nid, errs in node_errors.items()
    }
    assert "outside [0, 10]" in details["1"]
    assert "not one of the options" in details["3"]
    assert "outside" in details["5"]
    assert "no such file" in details["7"]
    assert "max_length 3" in details["9"]


def test_unsupported_output_formats_fail_validation(http: httpx.Client) -> None:
    image = upload(http, f"{uuid.uuid4().hex}.png", png_bytes(TEST_PIXELS))
    audio = upload(http, f"{uuid.uuid4().hex}.wav", wav_bytes())
    prefix = unique_prefix()
    prompt = {
        "1": node("ComfyPackInputImage", name="image", description="", image=image),
        "2": node(
            "ComfyPackOutputImage",
            images=["1", 0],
            name="image",
            format="gif",
            quality=95,
            filename_prefix=prefix,
        ),
        "3": node("ComfyPackInputAudio", name="audio", description="", audio=audio),
        "4": node(
            "ComfyPackOutputAudio",
            audio=["3", 0],
            name="audio",
            format="wav",
            filename_prefix=prefix,
        ),
        "5": node("CreateVideo", images=["1", 0], fps=8.0),
        "6": node(
            "ComfyPackOutputVideo",
            video=["5", 0],
            name="video",
            format="webm",
            codec="auto",
            filename_prefix=prefix,
        ),
    }
    response = submit(http, prompt)
    assert response.status_code == 400
    node_errors = response.json()["node_errors"]
    assert set(node_errors) == {"2", "4", "6"}
    for errors in node_errors.values():
        assert any("is not supported" in e["details"] for e in errors["errors"])


def test_number_output_rejects_non_numbers(http: httpx.Client) -> None:
    prompt = {
        "1": node("ComfyPackInputString", name="text", description="", default="abc", max_length=0),
        "2": node("ComfyPackOutputNumber", value=["1", 0], name="count"),
    }
    message = execution_error(run_prompt(http, prompt, succeed=False))
    assert "'count'" in message and "INT, FLOAT or BOOLEAN" in message


def test_json_output_rejects_unserializable_values(http: httpx.Client) -> None:
    image = upload(http, f"{uuid.uuid4().hex}.png", png_bytes(TEST_PIXELS))
    prompt = {
        "1": node("ComfyPackInputImage", name="image", description="", image=image),
        "2": node("ComfyPackOutputJSON", value=["1", 0], name="payload"),
    }
    message = execution_error(run_prompt(http, prompt, succeed=False))
    assert "'payload'" in message and "JSON-serializable" in message
