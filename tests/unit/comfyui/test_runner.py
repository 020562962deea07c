"""comfypack.comfyui.runner: prepare (validation, media, seeds), build_prompt, RunOutput, and a run
against the fake ComfyUI."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random

import jsonschema
import pytest

from comfypack.comfyui.client import ComfyUIClient
from comfypack.comfyui.runner import OutputFile, PreparedRequest, RunOutput, WorkflowRunner
from comfypack.errors import ComfyUIError, InputFetchError, PromptRejected, RequestError
from comfypack.workflow.interface import OutputSpec, load_workflow, parse_interface
from comfypack.workflow.media import MediaFile, Upload
from comfypack.workflow.schema import output_schema

from .._fake_comfyui import FakeComfyUI
from .._helpers import example, png_bytes, wav_bytes

PNG = png_bytes()
PNG_B64 = base64.b64encode(PNG).decode()
PNG_OUT = png_bytes(color=(1, 2, 3))


def runner_for(name: str, **kw) -> WorkflowRunner:
    wf = load_workflow(example(name))
    return WorkflowRunner(wf, parse_interface(wf), **kw)


def prepare(runner: WorkflowRunner, body) -> PreparedRequest:
    return asyncio.run(runner.prepare(body))


def run_async(coro, timeout: float = 15.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# -- prepare ----------------------------------------------------------------------------------


def test_prepare_validates_and_decodes_media():
    runner = runner_for("image_adjust")
    req = prepare(runner, {"image": PNG_B64, "width": 128})
    assert req.values == {
        "image": PNG_B64,
        "upscale_method": "bilinear",
        "width": 128,
        "height": 64,
        "blur_radius": 1,
        "sigma": 1.0,
    }
    assert req.files == {"image": MediaFile(PNG, "image.png", "image/png")}
    assert req.seeds == {}


def test_prepare_accepts_an_upload_with_its_file_name():
    runner = runner_for("image_mask_text")
    req = prepare(runner, {"image": Upload(PNG, "me.png"), "attachment": Upload(b"hi", "notes.md")})
    assert req.files["image"].data == PNG
    assert req.files["attachment"].filename == "attachment.md"


def test_prepare_validation_errors_come_first():
    runner = runner_for("image_adjust")
    with pytest.raises(RequestError) as info:
        prepare(runner, {"image": "not base64 !!", "width": 0})
    assert info.value.fields == ["width"], "schema problems are reported before media is decoded"
    assert not isinstance(info.value, InputFetchError)


def test_prepare_bad_media_names_the_field():
    runner = runner_for("image_adjust")
    with pytest.raises(InputFetchError) as info:
        prepare(runner, {"image": base64.b64encode(b"plain text").decode()})
    assert info.value.fields == ["image"]
    assert "not a readable image" in info.value.message


def test_prepare_reports_every_bad_file():
    runner = runner_for("image_mask_text", max_upload_bytes=len(PNG) + 10)
    with pytest.raises(RequestError) as info:
        prepare(runner, {"image": b"not an image", "attachment": b"x" * (len(PNG) + 11)})
    err = info.value
    assert sorted(err.fields) == ["attachment", "image"]
    assert err.status == 422  # the highest of 422 (unreadable) and 413 (too large)
    assert "image:" in err.message and "attachment:" in err.message
    with pytest.raises(RequestError) as info:
        prepare(runner, {"image": b"y" * (len(PNG) + 11), "attachment": b"x" * (len(PNG) + 11)})
    assert sorted(info.value.fields) == ["attachment", "image"]
    assert info.value.status == 413


def test_prepare_random_seed_in_range(monkeypatch):
    calls = []
    real = random.randint

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(random, "randint", spy)
    runner = runner_for("image_mask_text")
    body = {"image": PNG, "attachment": b"x"}
    seeds = [prepare(runner, body).seeds["seed"] for _ in range(5)]
    assert calls == [(0, 2**53 - 1)] * 5
    assert all(isinstance(s, int) and 0 <= s < 2**53 for s in seeds)
    assert len(set(seeds)) > 1, "omitted seeds are random"


def test_prepare_given_seed_is_kept_and_reported():
    runner = runner_for("image_mask_text")
    req = prepare(runner, {"image": PNG, "attachment": b"x", "seed": 12345})
    assert req.values["seed"] == 12345
    assert req.seeds == {"seed": 12345}


def test_prepare_does_not_touch_comfyui_for_bad_bodies():
    runner = runner_for("text_tools")
    with pytest.raises(RequestError) as info:
        prepare(runner, ["not", "an", "object"])
    assert info.value.status == 400


# -- build_prompt -------------------------------------------------------------------------------


def test_build_prompt_replaces_value_widgets_and_leaves_the_workflow_alone():
    wf = load_workflow(example("image_adjust"))
    original = copy.deepcopy(wf)
    runner = WorkflowRunner(wf, parse_interface(wf))
    values = {
        "image": "ignored",
        "upscale_method": "area",
        "width": 256,
        "height": 128,
        "blur_radius": 3,
        "sigma": 2.5,
    }
    prompt = runner.build_prompt(values, {"image": "comfypack/run1_image.png"}, "run1")
    assert prompt["1"]["inputs"]["image"] == "comfypack/run1_image.png"
    assert prompt["2"]["inputs"]["default"] == "area"
    assert [prompt[n]["inputs"]["default"] for n in ("3", "4", "5", "6")] == [256, 128, 3, 2.5]
    assert prompt["10"]["inputs"]["filename_prefix"] == "comfypack/run1_image"
    # other widgets and links are kept
    assert prompt["2"]["inputs"]["options"] == original["2"]["inputs"]["options"]
    assert prompt["7"] == original["7"]
    assert prompt["10"]["inputs"]["images"] == ["9", 0]
    # the workflow is untouched (the caller's dict and the runner's copy)
    assert wf == original
    assert runner.workflow == original
    second = runner.build_prompt({**values, "width": 8}, {"image": "x.png"}, "run2")
    assert second["3"]["inputs"]["default"] == 8
    assert prompt["3"]["inputs"]["default"] == 256, "each prompt is a fresh copy"


def test_build_prompt_file_outputs_only():
    runner = runner_for("image_mask_text")
    values = {"seed": 7, "noise": 0.5, "caption": "hi", "image": None, "attachment": None}
    prompt = runner.build_prompt(
        values, {"image": "comfypack/a.png", "attachment": "comfypack/b.txt"}, "R"
    )
    assert prompt["5"]["inputs"]["file"] == "comfypack/b.txt"
    assert prompt["2"]["inputs"]["default"] == 7
    assert {n: prompt[n]["inputs"]["filename_prefix"] for n in ("10", "11", "12", "15")} == {
        "10": "comfypack/R_inverted",
        "11": "comfypack/R_mask",
        "12": "comfypack/R_noisy",
        "15": "comfypack/R_attachment",
    }
    assert "filename_prefix" not in prompt["13"]["inputs"]  # a Text output has no files
    assert "filename_prefix" not in prompt["14"]["inputs"]


def test_build_prompt_fallback_save_image():
    wf = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"},
        },
    }
    runner = WorkflowRunner(wf, parse_interface(wf))
    prompt = runner.build_prompt({}, {}, "abc")
    assert prompt["2"]["inputs"]["filename_prefix"] == "comfypack/abc_saveimage_2"


# -- RunOutput ----------------------------------------------------------------------------------


def _specs(*pairs):
    return {name: OutputSpec(name, kind, str(i)) for i, (name, kind) in enumerate(pairs)}


def test_run_output_to_json():
    f1 = OutputFile(b"\x89PNG1", "image/png", "a.png")
    f2 = OutputFile(b"\x89PNG2", "image/png", "b.png")
    result = RunOutput(
        "p1",
        {
            "single": [f1],
            "batch": [f1, f2],
            "caption": ["hello"],
            "count": [3],
            "meta": [{"k": [1, 2]}],
        },
        _specs(
            ("single", "image"),
            ("batch", "image"),
            ("caption", "text"),
            ("count", "number"),
            ("meta", "json"),
        ),
        {"seed": 42},
    )
    body = result.to_json()
    uri1 = "data:image/png;base64," + base64.b64encode(b"\x89PNG1").decode()
    uri2 = "data:image/png;base64," + base64.b64encode(b"\x89PNG2").decode()
    assert body == {
        "single": uri1,
        "batch": [uri1, uri2],
        "caption": "hello",
        "count": 3,
        "meta": {"k": [1, 2]},
        "seeds": {"seed": 42},
    }
    assert json.loads(json.dumps(body)) == body


def test_run_output_without_seeds_has_no_seeds_key():
    result = RunOutput("p", {"t": ["x"]}, _specs(("t", "text")), {})
    assert result.to_json() == {"t": "x"}


def test_single_file():
    f = OutputFile(b"abc", "audio/flac", "x.flac")
    assert RunOutput("p", {"a": [f]}, _specs(("a", "audio")), {}).single_file() is f
    assert RunOutput("p", {"a": [f, f]}, _specs(("a", "audio")), {}).single_file() is None
    assert (
        RunOutput(
            "p", {"a": [f], "b": ["t"]}, _specs(("a", "audio"), ("b", "text")), {}
        ).single_file()
        is None
    )
    assert RunOutput("p", {"b": ["t"]}, _specs(("b", "text")), {}).single_file() is None
    assert RunOutput("p", {"a": []}, _specs(("a", "image")), {}).single_file() is None


def test_output_file_data_uri():
    assert OutputFile(b"hi", "text/plain", "x.txt").data_uri() == "data:text/plain;base64,aGk="


# -- run against the fake ComfyUI -----------------------------------------------------------------


def test_run_image_adjust_end_to_end():
    runner = runner_for("image_adjust")

    async def scenario():
        async with FakeComfyUI() as fake:
            fake.outputs = lambda pid: {
                "10": {
                    "images": [
                        {
                            "filename": "image_00001_.png",
                            "subfolder": f"comfypack/{pid}",
                            "type": "output",
                        }
                    ]
                }
            }
            fake.files["image_00001_.png"] = PNG_OUT
            async with ComfyUIClient(fake.url) as client:
                request = await runner.prepare({"image": PNG_B64, "width": 32})
                result = await runner.run(client, request, timeout=10)
            return fake, result

    fake, result = run_async(scenario())
    pid = result.prompt_id
    assert len(fake.uploads) == 1
    assert (fake.uploads[0]["filename"], fake.uploads[0]["subfolder"], fake.uploads[0]["data"]) == (
        f"{pid}_image.png",
        "comfypack",
        PNG,
    )
    prompt = fake.prompts[0]["prompt"]
    assert fake.prompts[0]["prompt_id"] == pid
    assert prompt["1"]["inputs"]["image"] == f"comfypack/{pid}_image.png"
    assert prompt["3"]["inputs"]["default"] == 32
    assert prompt["10"]["inputs"]["filename_prefix"] == f"comfypack/{pid}_image"
    assert fake.views == [
        {"filename": "image_00001_.png", "subfolder": f"comfypack/{pid}", "type": "output"}
    ]
    single = result.single_file()
    assert single == OutputFile(PNG_OUT, "image/png", "image_00001_.png")
    assert result.seeds == {}


def test_run_value_outputs_match_the_output_schema():
    runner = runner_for("text_tools")

    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.outputs = lambda pid: {
                "10": {"text": ["HELLO COMFYUI"]},
                "11": {"number": [13]},
                "12": {"json": [True]},
            }
            request = await runner.prepare({"text": "hello"})
            return fake, await runner.run(client, request)

    fake, result = run_async(scenario())
    body = result.to_json()
    assert body == {"text": "HELLO COMFYUI", "length": 13, "contains": True}
    assert result.single_file() is None
    jsonschema.validate(body, output_schema(runner.interface))
    assert fake.prompts[0]["prompt"]["1"]["inputs"]["default"] == "hello"
    assert fake.uploads == []


def test_run_batch_and_seeds_match_the_output_schema():
    runner = runner_for("image_mask_text")

    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:

            def outputs(pid):
                img = lambda n: {"filename": n, "subfolder": f"comfypack/{pid}", "type": "output"}  # noqa: E731
                return {
                    "10": {"images": [img("inv_1.png"), img("inv_2.png")]},
                    "11": {"images": [img("mask.webp")]},
                    "12": {"images": [img("noisy.png")]},
                    "13": {"text": ["cap"]},
                    "14": {"number": [4]},
                    "15": {"files": [img("attachment.txt")]},
                }

            fake.outputs = outputs
            for name in ("inv_1.png", "inv_2.png", "mask.webp", "noisy.png", "attachment.txt"):
                fake.files[name] = name.encode()
            request = await runner.prepare(
                {"image": PNG, "attachment": Upload(b"x", "a.txt"), "seed": 9}
            )
            return await runner.run(client, request)

    result = run_async(scenario())
    body = result.to_json()
    assert isinstance(body["inverted"], list) and len(body["inverted"]) == 2
    assert body["mask"].startswith("data:image/webp;base64,")
    assert (
        body["attachment"]
        == "data:text/plain;base64," + base64.b64encode(b"attachment.txt").decode()
    )
    assert body["seeds"] == {"seed": 9}
    jsonschema.validate(body, output_schema(runner.interface))


def test_run_missing_output_is_an_error():
    runner = runner_for("text_tools")

    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.outputs = lambda pid: {"10": {"text": ["x"]}}
            with pytest.raises(ComfyUIError) as info:
                await runner.run(client, await runner.prepare({}))
            return info.value

    err = run_async(scenario())
    assert "output 'length' (node 11) produced nothing" in err.message


def test_run_prompt_rejected_names_the_api_field():
    runner = runner_for("image_adjust")  # node 3 is the `width` input

    async def scenario():
        async with FakeComfyUI() as fake, ComfyUIClient(fake.url) as client:
            fake.mode = "reject"
            with pytest.raises(PromptRejected) as info:
                await runner.run(client, await runner.prepare({"image": PNG}))
            return info.value

    err = run_async(scenario())
    assert "node_errors" in err.details
    fields = err.details["fields"]
    assert [f["field"] for f in fields] == ["width"]
    assert "'cubic' not in" in fields[0]["message"]


def test_run_with_local_dirs_reads_from_disk_and_cleans_up(tmp_path):
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    runner = runner_for("audio_volume")
    seen: dict = {}

    async def scenario():
        async with FakeComfyUI(input_dir=input_dir, output_dir=output_dir) as fake:

            def finish(pid):
                target = output_dir / "comfypack" / f"{pid}_audio_00001_.flac"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"fLaC local")
                seen["files"] = sorted(
                    p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
                )

            fake.on_finish = finish
            fake.outputs = lambda pid: {
                "4": {
                    "audio": [
                        {
                            "filename": f"{pid}_audio_00001_.flac",
                            "subfolder": "comfypack",
                            "type": "output",
                        }
                    ]
                }
            }
            async with ComfyUIClient(
                fake.url, input_dir=input_dir, output_dir=output_dir
            ) as client:
                result = await runner.run(client, await runner.prepare({"audio": wav_bytes()}))
            return fake, result

    fake, result = run_async(scenario())
    pid = result.prompt_id
    assert seen["files"] == [
        f"input/comfypack/{pid}_audio.wav",
        f"output/comfypack/{pid}_audio_00001_.flac",
    ]
    assert result.single_file() == OutputFile(
        b"fLaC local", "audio/flac", f"{pid}_audio_00001_.flac"
    )
    assert fake.views == []
    assert not (output_dir / "comfypack" / f"{pid}_audio_00001_.flac").exists()
    assert not (input_dir / "comfypack" / f"{pid}_audio.wav").exists()


def test_run_without_cleanup_keeps_files(tmp_path):
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    runner = runner_for("audio_volume", cleanup=False)

    async def scenario():
        async with FakeComfyUI(input_dir=input_dir, output_dir=output_dir) as fake:
            fake.outputs = lambda pid: {"4": {"audio": []}}
            async with ComfyUIClient(
                fake.url, input_dir=input_dir, output_dir=output_dir
            ) as client:
                return await runner.run(client, await runner.prepare({"audio": wav_bytes()}))

    result = run_async(scenario())
    assert (input_dir / "comfypack" / f"{result.prompt_id}_audio.wav").is_file()
    assert result.outputs == {"audio": []}
    assert result.single_file() is None


# -- pixel limits (issue 11): measured from the header, per image and per request ---------------


def _two_images() -> WorkflowRunner:
    wf = {
        "1": {
            "class_type": "ComfyPackInputImage",
            "inputs": {"name": "a", "description": "", "image": "x.png"},
        },
        "2": {
            "class_type": "ComfyPackInputImage",
            "inputs": {"name": "b", "description": "", "image": "x.png"},
        },
        "3": {
            "class_type": "ComfyPackOutputImage",
            "inputs": {
                "images": ["1", 0],
                "name": "out",
                "format": "png",
                "quality": 95,
                "filename_prefix": "comfypack",
            },
        },
    }
    from comfypack.workflow.media import InputLimits

    return WorkflowRunner(
        wf, parse_interface(wf), limits=InputLimits(max_image_pixels=3000, max_request_pixels=5000)
    )


def test_pixel_limits_per_image_and_per_request():
    runner = _two_images()
    ok = prepare(runner, {"a": png_bytes((50, 50)), "b": png_bytes((40, 40))})  # 2500 + 1600 px
    assert ok.files["a"].pixels == 2500 and ok.files["b"].pixels == 1600
    with pytest.raises(InputFetchError) as info:
        prepare(
            runner, {"a": png_bytes((60, 60)), "b": png_bytes((4, 4))}
        )  # one image over 3000 px
    assert info.value.status == 413 and info.value.fields == ["a"] and "60×60" in info.value.message
    with pytest.raises(RequestError) as info:
        prepare(runner, {"a": png_bytes((50, 50)), "b": png_bytes((50, 51))})  # 5050 px > 5000
    assert info.value.status == 413 and info.value.fields == ["a", "b"]
    assert "per request" in info.value.message


def test_default_pixel_limits_follow_the_machine_memory():
    from comfypack.workflow.media import default_pixel_limits

    assert default_pixel_limits(1024**3) == (8_000_000, 8_000_000)  # a small worker: the floor
    image, request = default_pixel_limits(16 * 1024**3)
    assert image == 40_000_000 and request == 16 * 1024**3 // 4 // 48
    assert default_pixel_limits(10**13) == (40_000_000, 200_000_000)
    assert 9000 * 9000 > image  # the 9000×9000 PNG is refused on any machine


def test_run_output_write_to_names_files_and_keeps_values_in_outputs_json(tmp_path):
    png = OutputFile(b"\x89PNG-1", "image/png", "ComfyUI_0001.png")
    out = RunOutput("p", {"image": [png], "frames": [png, png], "count": [3]}, {}, {"seed": 7})
    written = out.write_to(tmp_path / "out")
    assert sorted(p.name for p in written) == [
        "frames_0.png",
        "frames_1.png",
        "image.png",
        "outputs.json",
    ]
    assert (tmp_path / "out" / "image.png").read_bytes() == b"\x89PNG-1"
    assert json.loads((tmp_path / "out" / "outputs.json").read_text()) == {
        "count": 3,
        "seeds": {"seed": 7},
    }
    assert not [
        p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")
    ]  # no temp files left
