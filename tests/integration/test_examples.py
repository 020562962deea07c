"""Every example workflow, run on a real headless ComfyUI through comfypack's own code path.

Each run goes ``WorkflowRunner(workflow, parse_interface(workflow))`` → ``prepare(body)`` →
``run(ComfyUIClient(...))``, exactly as the service and ``comfypack run`` do, and the tests check the
*content* of what comes back (pixels, samples, frames, text), not only that something came back.
Every run is also checked to leave nothing behind in ComfyUI's input and output directories.

Also here: caller errors stop in ``prepare`` (ComfyUI is never touched), ComfyUI's refusals
(``PromptRejected`` with ``node_errors``) and run-time failures (``ExecutionFailed``), each example's
own ``request.json`` and canvas asset, and ``comfypack run`` as a subprocess.

Test media are generated here (PIL, ``wave``, PyAV); nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from comfypack.comfyui.client import ComfyUIClient
from comfypack.comfyui.runner import OutputFile, RunOutput, WorkflowRunner
from comfypack.errors import ExecutionFailed, InputFetchError, PromptRejected, RequestError
from comfypack.workflow.interface import FILE_KINDS, load_workflow, parse_interface

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "workflows"
EXAMPLE_NAMES = sorted(p.parent.name for p in EXAMPLES.glob("*/workflow_api.json"))
TIMEOUT = 120.0
SEED_MAX = 2**64 - 1

#: what each example's API returns, by name
EXPECTED_OUTPUTS = {
    "audio_volume": {"audio"},
    "image_adjust": {"image"},
    "image_mask_text": {"inverted", "mask", "noisy", "caption", "width", "attachment"},
    "text_tools": {"text", "length", "contains"},
    "video_invert": {"video", "fps"},
}


def test_every_example_is_covered() -> None:
    assert EXAMPLE_NAMES == sorted(EXPECTED_OUTPUTS), (
        "examples/workflows changed: add the new example to EXPECTED_OUTPUTS and give it a content test"
    )


# --------------------------------------------------------------------------------------------------
# media


def png(
    size: tuple[int, int] = (16, 16), color: tuple[int, ...] = (10, 100, 200), mode: str = "RGB"
) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def png_from(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def pixels(data: bytes, mode: str = "RGB") -> np.ndarray:
    """Decoded pixels as int16 (so differences don't wrap)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode)).astype(np.int16)


def wav(channels: list[list[float]], rate: int) -> bytes:
    """16-bit PCM WAV of the given float channels (equal length, in -1..1)."""
    n = len(channels[0])
    frames = b"".join(
        struct.pack("<" + "h" * len(channels), *(round(ch[i] * 32767) for ch in channels))
        for i in range(n)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def sine(n: int, rate: int, freq: float, amplitude: float) -> list[float]:
    return [amplitude * math.sin(2 * math.pi * freq * i / rate) for i in range(n)]


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """(samples as float64 [channels, n] in -1..1, sample rate) of any file PyAV reads."""
    import av

    chunks = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            channels = len(frame.layout.channels)
            if not frame.format.is_planar:
                arr = arr.reshape(-1, channels).T
            if np.issubdtype(arr.dtype, np.integer):
                arr = arr.astype(np.float64) / (np.iinfo(arr.dtype).max + 1)
            chunks.append(arr.astype(np.float64))
    return np.concatenate(chunks, axis=1), rate


def mp4(frames: list[np.ndarray], fps: int) -> bytes:
    import av

    height, width = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for arr in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(arr.astype(np.uint8), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_video(data: bytes) -> tuple[list[np.ndarray], float]:
    """(RGB frames as int16 arrays, average frame rate)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(stream)]
    return frames, fps


# --------------------------------------------------------------------------------------------------
# running


def example(name: str) -> dict[str, Any]:
    return load_workflow(EXAMPLES / name / "workflow_api.json")


def files_under(*dirs: Path) -> set[Path]:
    return {p for d in dirs if d.exists() for p in d.rglob("*") if p.is_file()}


def run_workflow(comfyui: Any, workflow: dict[str, Any], body: dict[str, Any]) -> RunOutput:
    """prepare + run on the session's ComfyUI; fails the test if the run leaves any file behind."""
    runner = WorkflowRunner(workflow, parse_interface(workflow))
    before = files_under(comfyui.input_dir, comfyui.output_dir)

    async def go() -> RunOutput:
        request = await runner.prepare(body)
        async with ComfyUIClient(
            comfyui.url, output_dir=comfyui.output_dir, input_dir=comfyui.input_dir
        ) as client:
            return await runner.run(client, request, timeout=TIMEOUT)

    try:
        return asyncio.run(go())
    finally:
        left = files_under(comfyui.input_dir, comfyui.output_dir) - before
        assert not left, (
            f"the run left files in ComfyUI's input/output dirs: {sorted(map(str, left))}"
        )


def run_example(comfyui: Any, name: str, body: dict[str, Any]) -> RunOutput:
    result = run_workflow(comfyui, example(name), body)
    assert set(result.outputs) == EXPECTED_OUTPUTS[name]
    assert not (comfyui.output_dir / "comfypack" / result.prompt_id).exists(), (
        "run folder not removed"
    )
    return result


def only_file(result: RunOutput, name: str) -> OutputFile:
    values = result.outputs[name]
    assert len(values) == 1 and isinstance(values[0], OutputFile), values
    assert values[0].data, f"{name} is empty"
    return values[0]


def only_value(result: RunOutput, name: str) -> Any:
    values = result.outputs[name]
    assert len(values) == 1, values
    return values[0]


# --------------------------------------------------------------------------------------------------
# image_adjust: resize → blur → invert


def test_image_adjust_inverts_a_uniform_colour_at_the_requested_size(comfyui: Any) -> None:
    result = run_example(
        comfyui,
        "image_adjust",
        {
            "image": png((16, 16), (10, 100, 200)),
            "width": 40,
            "height": 24,
            "blur_radius": 3,
            "sigma": 2.0,
        },
    )
    out = only_file(result, "image")
    assert out.media_type == "image/png" and out.filename.endswith(".png")
    assert result.single_file() == out
    assert result.to_json()["image"].startswith("data:image/png;base64,")
    px = pixels(out.data)
    assert px.shape == (24, 40, 3)
    assert np.abs(px - (245, 155, 55)).max() <= 2, px.reshape(-1, 3)[:4]
    assert result.seeds == {}


def test_image_adjust_inverts_each_half_of_a_two_tone_image(comfyui: Any) -> None:
    src = np.zeros((32, 32, 3), np.uint8)
    src[:, 16:] = 255  # left black, right white
    result = run_example(
        comfyui,
        "image_adjust",
        {
            "image": png_from(src),
            "width": 64,
            "height": 48,
            "upscale_method": "nearest-exact",
            "blur_radius": 2,
            "sigma": 1.0,
        },
    )
    px = pixels(only_file(result, "image").data)
    assert px.shape == (48, 64, 3)
    # the seam is at x = 32 in the output; the blur reaches 2 px either side of it
    assert np.abs(px[:, :28] - 255).max() <= 2, "left half (black) should come back white"
    assert np.abs(px[:, 36:] - 0).max() <= 2, "right half (white) should come back black"
    seam = px[:, 30:34].mean()
    assert 20 < seam < 235, f"the blur should soften the seam, got mean {seam}"


def test_image_adjust_takes_an_image_url(comfyui: Any, file_server: Any) -> None:
    from comfypack.files.urlfetch import UrlPolicy
    from comfypack.workflow.media import InputLimits

    url = file_server.put("uniform.png", png((10, 10), (0, 0, 0)))
    body = {"image": url, "width": 16, "height": 8}
    # the file server is on 127.0.0.1: URL inputs refuse it by default ...
    with pytest.raises(InputFetchError, match="public addresses"):
        run_example(comfyui, "image_adjust", body)
    # ... and reach it where an operator allows it (COMFYPACK_URL_ALLOW)
    workflow = example("image_adjust")
    runner = WorkflowRunner(
        workflow,
        parse_interface(workflow),
        limits=InputLimits(url=UrlPolicy(*UrlPolicy.parse_allow("127.0.0.1"))),
    )

    async def go() -> RunOutput:
        request = await runner.prepare(body)
        async with ComfyUIClient(
            comfyui.url, output_dir=comfyui.output_dir, input_dir=comfyui.input_dir
        ) as client:
            return await runner.run(client, request, timeout=TIMEOUT)

    px = pixels(only_file(asyncio.run(go()), "image").data)
    assert px.shape == (8, 16, 3) and px.min() >= 253


def test_concurrent_runs_on_one_client_get_their_own_outputs(comfyui: Any) -> None:
    """One websocket, several prompts in flight: each run gets its own prompt's outputs."""
    workflow = example("image_adjust")
    runner = WorkflowRunner(workflow, parse_interface(workflow))
    colours = [(0, 0, 0), (255, 255, 255), (10, 100, 200), (200, 30, 90)]
    before = files_under(comfyui.input_dir, comfyui.output_dir)

    async def go() -> list[RunOutput]:
        requests = [
            await runner.prepare({"image": png((8, 8), c), "width": 16, "height": 16})
            for c in colours
        ]
        async with ComfyUIClient(
            comfyui.url, output_dir=comfyui.output_dir, input_dir=comfyui.input_dir
        ) as client:
            return await asyncio.gather(*(runner.run(client, r, timeout=TIMEOUT) for r in requests))

    results = asyncio.run(go())
    assert len({r.prompt_id for r in results}) == len(colours)
    for colour, result in zip(colours, results, strict=True):
        px = pixels(only_file(result, "image").data)
        assert np.abs(px - (255 - np.array(colour))).max() <= 2, colour
    assert files_under(comfyui.input_dir, comfyui.output_dir) == before


def test_image_adjust_offers_every_upscale_method() -> None:
    spec = parse_interface(example("image_adjust")).input("upscale_method")
    assert spec.options == ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
    assert spec.default == "bilinear"


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_image_adjust_accepts_each_upscale_method(comfyui: Any, method: str) -> None:
    result = run_example(
        comfyui,
        "image_adjust",
        {
            "image": png((12, 20), (200, 30, 90)),
            "upscale_method": method,
            "width": 24,
            "height": 16,
        },
    )
    px = pixels(only_file(result, "image").data)
    assert px.shape == (16, 24, 3)
    assert np.abs(px - (55, 225, 165)).max() <= 2


# --------------------------------------------------------------------------------------------------
# text_tools: concatenate → change case → length / contains


def test_text_tools_defaults(comfyui: Any) -> None:
    result = run_example(comfyui, "text_tools", {})
    assert result.outputs == {"text": ["HELLO COMFYUI"], "length": [13], "contains": [True]}
    assert result.to_json() == {"text": "HELLO COMFYUI", "length": 13, "contains": True}
    assert type(result.outputs["length"][0]) is int


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("UPPERCASE", "HÉLLO WIDE WORLD-ÄX"),
        ("lowercase", "héllo wide world-äx"),
        ("Capitalize", "Héllo wide world-äx"),
        ("Title Case", "Héllo Wide World-Äx"),
    ],
)
def test_text_tools_case(comfyui: Any, case: str, expected: str) -> None:
    result = run_example(
        comfyui, "text_tools", {"text": "hÉLLO wide", "suffix": " wORLD-äx", "case": case}
    )
    assert only_value(result, "text") == expected
    assert only_value(result, "length") == len(expected) == 19


@pytest.mark.parametrize(
    ("case", "needle", "case_sensitive", "expected"),
    [
        ("UPPERCASE", "comfy", False, True),
        ("UPPERCASE", "comfy", True, False),
        ("UPPERCASE", "COMFY", True, True),
        ("lowercase", "comfy", True, True),
        ("Title Case", "comfy", True, False),
        ("lowercase", "xyz", False, False),
    ],
)
def test_text_tools_contains(
    comfyui: Any, case: str, needle: str, case_sensitive: bool, expected: bool
) -> None:
    result = run_example(
        comfyui,
        "text_tools",
        {"text": "Hello", "case": case, "needle": needle, "case_sensitive": case_sensitive},
    )
    assert only_value(result, "contains") is expected


# --------------------------------------------------------------------------------------------------
# image_mask_text: invert, mask, seeded noise, caption, size, attachment


def rgba_halves() -> bytes:
    """16×12, colour (10,100,200); alpha 64 on the left half, 255 on the right."""
    arr = np.zeros((12, 16, 4), np.uint8)
    arr[..., :3] = (10, 100, 200)
    arr[:, :8, 3] = 64
    arr[:, 8:, 3] = 255
    return png_from(arr)


ATTACHMENT = bytes(range(256)) * 4


def test_image_mask_text_outputs(comfyui: Any) -> None:
    caption = "a caption — ünïcode ✓\nsecond line"
    result = run_example(
        comfyui,
        "image_mask_text",
        {
            "image": rgba_halves(),
            "seed": 7,
            "noise": 0.3,
            "caption": caption,
            "attachment": ATTACHMENT,
        },
    )

    inverted = pixels(only_file(result, "inverted").data)
    assert inverted.shape == (12, 16, 3)
    assert np.abs(inverted - (245, 155, 55)).max() <= 1, "the RGB part, inverted (alpha dropped)"

    mask_file = only_file(result, "mask")
    assert mask_file.filename.endswith(".webp") and mask_file.media_type == "image/webp"
    mask = pixels(mask_file.data, "L")
    assert mask.shape == (12, 16)
    # ComfyUI's LoadImage mask is 1 - alpha: alpha 64 → 191, alpha 255 → 0 (webp is lossless at q=100)
    assert np.abs(mask[:, :8] - round(255 * (1 - 64 / 255))).max() <= 1
    assert mask[:, 8:].max() <= 1

    noisy = pixels(only_file(result, "noisy").data)
    assert noisy.shape == (12, 16, 3)
    assert np.abs(noisy - (10, 100, 200)).mean() > 10, "noise 0.3 should visibly change the picture"

    assert result.outputs["caption"] == [caption]
    assert result.outputs["width"] == [16]
    attachment = only_file(result, "attachment")
    assert attachment.data == ATTACHMENT
    assert result.seeds == {"seed": 7}
    assert result.to_json()["seeds"] == {"seed": 7}


def test_image_mask_text_noise_follows_the_seed(comfyui: Any) -> None:
    image = png((16, 16), (128, 128, 128))
    body = {"image": image, "attachment": b"x", "noise": 0.5}

    first = run_example(comfyui, "image_mask_text", body)  # seed omitted: comfypack picks one
    chosen = first.seeds["seed"]
    assert isinstance(chosen, int) and 0 <= chosen < 2**53
    again = run_example(comfyui, "image_mask_text", {**body, "seed": chosen})
    assert again.seeds == {"seed": chosen}
    other = run_example(comfyui, "image_mask_text", {**body, "seed": SEED_MAX})
    assert other.seeds == {"seed": SEED_MAX}

    assert only_file(first, "noisy").data == only_file(again, "noisy").data, "same seed, same file"
    a, b, c = (pixels(only_file(r, "noisy").data) for r in (first, again, other))
    assert np.array_equal(a, b), "the reported seed must reproduce the same noise"
    assert np.abs(a - c).mean() > 5, "a different seed must give different noise"


# --------------------------------------------------------------------------------------------------
# audio_volume


@pytest.mark.parametrize("gain_db", [-6, 0, 12])
def test_audio_volume_scales_the_amplitude(comfyui: Any, gain_db: int) -> None:
    rate, n = 22050, 5000
    source = np.array([sine(n, rate, 440, 0.2), sine(n, rate, 660, 0.15)])
    result = run_example(
        comfyui, "audio_volume", {"audio": wav(source.tolist(), rate), "gain_db": gain_db}
    )
    out = only_file(result, "audio")
    assert out.filename.endswith(".flac") and out.data[:4] == b"fLaC"
    samples, out_rate = decode_audio(out.data)
    assert out_rate == rate
    assert samples.shape == source.shape, "channels and sample count are kept"
    expected = 10 ** (gain_db / 20)
    ratio = float((samples * source).sum() / (source * source).sum())
    assert ratio == pytest.approx(expected, rel=0.02), (
        f"{gain_db} dB should scale by {expected:.3f}"
    )
    assert np.abs(samples - expected * source).max() < 2e-3, "the shape of the wave is kept"


# --------------------------------------------------------------------------------------------------
# video_invert


def test_video_invert_inverts_every_frame(comfyui: Any) -> None:
    frames = []
    for _ in range(12):
        arr = np.zeros((32, 48, 3), np.uint8)
        arr[:, :24] = (40, 120, 200)
        arr[:, 24:] = (220, 200, 30)
        frames.append(arr)
    source = mp4(frames, fps=12)
    src_frames, src_fps = decode_video(source)

    result = run_example(comfyui, "video_invert", {"video": source})
    out = only_file(result, "video")
    assert out.filename.endswith(".mp4") and out.media_type == "video/mp4"
    out_frames, out_fps = decode_video(out.data)
    assert len(out_frames) == len(src_frames) == 12
    assert out_frames[0].shape == (32, 48, 3)
    assert out_fps == pytest.approx(src_fps)
    for got, src in zip(out_frames, src_frames, strict=True):
        diff = np.abs(got - (255 - src))
        # h264 is lossy: ComfyUI 0.28's encoder settings ring up to ~60 levels at the sharp colour
        # edge (columns 24±4); away from it every pixel is the inverse, and the frame is on average
        interior = np.concatenate([diff[:, :20], diff[:, 28:]], axis=1)
        assert interior.max() <= 8
        assert diff.mean() <= 4
    assert result.outputs["fps"] == [pytest.approx(12.0)]


# --------------------------------------------------------------------------------------------------
# caller errors: found by prepare(), before ComfyUI is touched

PNG = png()
WAV = wav([sine(800, 8000, 440, 0.3)], 8000)


def webp() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="WEBP")
    return buf.getvalue()


BAD_REQUESTS = [
    ("image_adjust", {"image": PNG, "width": 4}, "width", RequestError),
    ("image_adjust", {"image": PNG, "width": 4096}, "width", RequestError),
    ("image_adjust", {"image": PNG, "width": "wide"}, "width", RequestError),
    ("image_adjust", {"image": PNG, "sigma": 0.0}, "sigma", RequestError),
    ("image_adjust", {"image": PNG, "upscale_method": "cubic"}, "upscale_method", RequestError),
    ("image_adjust", {}, "image", RequestError),
    ("image_adjust", {"image": PNG, "colour": "red"}, "colour", RequestError),
    ("image_adjust", {"image": b"not an image"}, "image", InputFetchError),
    ("image_adjust", {"image": "data:image/png;base64,@@@"}, "image", InputFetchError),
    ("image_adjust", {"image": "file:///etc/passwd"}, "image", InputFetchError),
    ("text_tools", {"suffix": "x" * 65}, "suffix", RequestError),
    ("text_tools", {"case": "upper"}, "case", RequestError),
    ("text_tools", {"case_sensitive": "yes"}, "case_sensitive", RequestError),
    ("image_mask_text", {"image": PNG, "attachment": b"x", "seed": -1}, "seed", RequestError),
    (
        "image_mask_text",
        {"image": PNG, "attachment": b"x", "seed": SEED_MAX + 1},
        "seed",
        RequestError,
    ),
    (
        "image_mask_text",
        {"image": PNG, "attachment": b""},
        "attachment",
        RequestError,
    ),  # empty: refused by validation
    ("image_mask_text", {"image": PNG}, "attachment", RequestError),
    ("audio_volume", {"audio": PNG}, "audio", InputFetchError),
    ("audio_volume", {"audio": WAV, "gain_db": 1.5}, "gain_db", RequestError),
    ("video_invert", {"video": PNG}, "video", InputFetchError),
    pytest.param("video_invert", {"video": WAV}, "video", InputFetchError),
    pytest.param("audio_volume", {"audio": webp()}, "audio", InputFetchError),
]


@pytest.mark.parametrize(
    ("name", "body", "field", "error"),
    BAD_REQUESTS,
    ids=[
        f"{i:02}-{(c.values if hasattr(c, 'values') else c)[0]}" for i, c in enumerate(BAD_REQUESTS)
    ],
)
def test_bad_request_is_refused_before_comfyui(
    comfyui: Any, name: str, body: dict[str, Any], field: str, error: type[RequestError]
) -> None:
    workflow = example(name)
    runner = WorkflowRunner(workflow, parse_interface(workflow))
    before = files_under(comfyui.input_dir, comfyui.output_dir)
    with pytest.raises(error) as info:
        asyncio.run(runner.prepare(body))
    assert field in info.value.fields, (info.value.message, info.value.details)
    assert 400 <= info.value.status < 500 and info.value.exit_code == 2
    assert files_under(comfyui.input_dir, comfyui.output_dir) == before


# --------------------------------------------------------------------------------------------------
# ComfyUI's refusals and run-time failures


def test_prompt_rejected_by_comfyui_carries_node_errors(comfyui: Any) -> None:
    workflow = example("image_adjust")
    workflow["7"]["inputs"]["crop"] = "sideways"  # ImageScale's crop is a combo: disabled | center
    with pytest.raises(PromptRejected) as info:
        run_workflow(comfyui, workflow, {"image": PNG})
    error = info.value
    assert error.status == 400
    node_errors = error.details["node_errors"]
    assert set(node_errors) == {"7"}
    assert node_errors["7"]["class_type"] == "ImageScale"
    assert "crop" in json.dumps(node_errors["7"]["errors"])
    assert "fields" not in error.details, "node 7 is not an input node"


def test_prompt_rejected_at_an_input_node_names_the_field(comfyui: Any) -> None:
    workflow = {  # an Int input without its min/max/step widgets: comfypack reads it, ComfyUI does not
        "1": {
            "class_type": "ComfyPackInputInt",
            "inputs": {"name": "count", "description": "", "default": 3},
        },
        "2": {
            "class_type": "ComfyPackOutputNumber",
            "inputs": {"value": ["1", 0], "name": "count_out"},
        },
    }
    with pytest.raises(PromptRejected) as info:
        run_workflow(comfyui, workflow, {"count": 5})
    assert set(info.value.details["node_errors"]) == {"1"}
    assert [f["field"] for f in info.value.details["fields"]] == ["count"]


def test_node_failing_at_run_time_raises_execution_failed(comfyui: Any) -> None:
    workflow = {  # an IMAGE tensor into the JSON output: not JSON-serializable
        "1": {
            "class_type": "ComfyPackInputImage",
            "inputs": {"name": "image", "description": "", "image": "x.png"},
        },
        "2": {"class_type": "ComfyPackOutputJSON", "inputs": {"value": ["1", 0], "name": "data"}},
    }
    with pytest.raises(ExecutionFailed) as info:
        run_workflow(comfyui, workflow, {"image": PNG})
    details = info.value.details
    assert details["node_id"] == "2" and details["node_type"] == "ComfyPackOutputJSON"
    assert "not JSON-serializable" in details["exception_message"]
    assert info.value.status == 500 and info.value.exit_code == 1


def test_file_output_of_a_missing_file_raises_execution_failed(
    comfyui: Any, tmp_path: Path
) -> None:
    workflow = {
        "1": {
            "class_type": "ComfyPackInputString",
            "inputs": {"name": "path", "description": "", "default": "", "max_length": 0},
        },
        "2": {
            "class_type": "ComfyPackOutputFile",
            "inputs": {"path": ["1", 0], "name": "file", "filename_prefix": "comfypack"},
        },
    }
    with pytest.raises(ExecutionFailed) as info:
        run_workflow(comfyui, workflow, {"path": str(tmp_path / "missing.bin")})
    assert info.value.details["node_id"] == "2"
    assert info.value.details["exception_type"].endswith("FileNotFoundError")


# --------------------------------------------------------------------------------------------------
# each example's request.json and canvas asset


def media_inputs(workflow: dict[str, Any]) -> list[tuple[str, str]]:
    """(input name, the file its node names) for every file input of a workflow."""
    interface = parse_interface(workflow)
    return [
        (s.name, workflow[s.node_id]["inputs"][s.widget])
        for s in interface.inputs
        if s.kind in FILE_KINDS
    ]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_request_json_runs(comfyui: Any, name: str) -> None:
    path = EXAMPLES / name / "request.json"
    assert path.stat().st_size < 20_000, "keep request.json small"
    body = json.loads(path.read_text())
    workflow = example(name)
    for field, asset in media_inputs(workflow):
        assert body[field].startswith("data:"), f"{field}: media as a data: URI"
        payload = base64.b64decode(body[field].split(",", 1)[1])
        assert payload == (EXAMPLES / name / asset).read_bytes(), (
            f"{field} is the example's {asset}"
        )

    result = run_example(comfyui, name, body)
    for spec in parse_interface(workflow).outputs:
        values = result.outputs[spec.name]
        assert values, f"{spec.name} is empty"
        if spec.is_file:
            assert all(isinstance(v, OutputFile) and v.data for v in values)
    json.dumps(result.to_json())  # the service's JSON response is serializable


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_runs_from_the_canvas_with_its_asset(comfyui: Any, name: str) -> None:
    """The unmodified workflow runs in ComfyUI once its example file is in the input dir."""
    workflow = example(name)
    assets = [asset for _, asset in media_inputs(workflow)]
    copied = []
    out_before = files_under(comfyui.output_dir)
    try:
        for asset in assets:
            target = comfyui.input_dir / asset
            assert not target.exists()
            shutil.copyfile(EXAMPLES / name / asset, target)
            copied.append(target)

        async def go() -> Any:
            async with ComfyUIClient(comfyui.url) as client:
                return await client.run(workflow, timeout=TIMEOUT)

        result = asyncio.run(go())
        output_nodes = {o.node_id for o in parse_interface(workflow).outputs}
        assert output_nodes <= set(result.outputs), result.outputs
    finally:
        for path in copied:
            path.unlink(missing_ok=True)
        for path in files_under(comfyui.output_dir) - out_before:
            path.unlink()


# --------------------------------------------------------------------------------------------------
# comfypack run (the CLI)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "comfypack.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def test_cli_run_text_tools(comfyui: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli(
        str(EXAMPLES / "text_tools" / "workflow_api.json"),
        "-i",
        "text=abc",
        "-i",
        "suffix= DEF",
        "-i",
        "case=Capitalize",
        "-i",
        "needle=DEF",
        "-i",
        "case_sensitive=false",
        "-o",
        str(out),
        "--comfyui-url",
        comfyui.url,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "outputs.json").read_text()) == {
        "text": "Abc def",
        "length": 7,
        "contains": True,
    }
    printed = json.loads(proc.stdout)
    assert printed["files"] == [str(out / "outputs.json")]
    assert printed["seeds"] == {}


def test_cli_run_image_adjust_with_a_file_path(comfyui: Any, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(png((16, 16), (10, 100, 200)))
    out = tmp_path / "out"
    proc = cli(
        str(EXAMPLES / "image_adjust" / "workflow_api.json"),
        "-i",
        f"image={src}",
        "-i",
        "width=24",
        "-i",
        "height=16",
        "-i",
        "upscale_method=nearest-exact",
        "-o",
        str(out),
        "--comfyui-url",
        comfyui.url,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["image.png"]
    px = pixels((out / "image.png").read_bytes())
    assert px.shape == (16, 24, 3)
    assert np.abs(px - (245, 155, 55)).max() <= 2


def test_cli_run_bad_input_exits_2_without_contacting_comfyui(tmp_path: Path) -> None:
    from comfypack.comfyui.process import free_port

    src = tmp_path / "in.png"
    src.write_bytes(PNG)
    proc = cli(
        str(EXAMPLES / "image_adjust" / "workflow_api.json"),
        "-i",
        f"image={src}",
        "-i",
        "width=1",
        "-o",
        str(tmp_path / "out"),
        "--comfyui-url",
        f"http://127.0.0.1:{free_port()}",
    )
    assert proc.returncode == 2, proc.stderr
    assert "width" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_run_with_comfyui_url_leaves_nothing_behind(comfyui: Any, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(PNG)
    before = files_under(comfyui.input_dir, comfyui.output_dir)
    proc = cli(
        str(EXAMPLES / "image_adjust" / "workflow_api.json"),
        "-i",
        f"image={src}",
        "-o",
        str(tmp_path / "out"),
        "--comfyui-url",
        comfyui.url,
    )
    assert proc.returncode == 0, proc.stderr
    left = files_under(comfyui.input_dir, comfyui.output_dir) - before
    for path in left:  # keep the session's ComfyUI clean for the other tests either way
        path.unlink()
    assert not left, sorted(map(str, left))
