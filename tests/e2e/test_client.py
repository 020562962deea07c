"""The generated typed client against a real `bentoml serve` of every example — and BentoML's own
``SyncHTTPClient`` against the same service.

The five examples are served once for the module (started in parallel, attached to the
session's ComfyUI). Each client is generated with ``comfypack.ship.codegen``, imported from a temp
dir, and called both sync and async; outputs are checked by content.

``bentoml.SyncHTTPClient`` (BentoML 1.4) reads ``/schema.json`` and works for JSON in / JSON out:
keyword arguments become the JSON body (files as base64 / data: URIs / URLs), the answer a dict.
It cannot: upload bytes or paths (it uploads only fields typed ``"type": "file"`` — BentoML's own
schema dialect — and ours are JSON Schema ``string``/``binary``, so it tries to JSON-encode the
bytes), read a single-file answer (it picks the decoder from the declared output schema, an
object, and JSON-decodes the PNG), or ``.submit()`` a job (BentoML bug: ``_submit`` closes
``self._opened_files``, which the client does not have). The raw route works for all of these:
``client.request(...)``, and ``get_status`` / ``get`` for jobs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import EXAMPLES, FileServer, Served, bentoml_serve, mp4_bytes, png_bytes, wav_bytes

from comfypack.ship.codegen import generate_client
from comfypack.workflow.interface import load_workflow, parse_interface

pytestmark = pytest.mark.e2e

NAMES = ("audio_volume", "image_adjust", "image_mask_text", "text_tools", "video_invert")


@pytest.fixture(scope="module")
def served(comfyui: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    """Every example served once, attached to the session's ComfyUI (started in parallel).

    Each gets its own BENTOML_HOME: `bentoml serve` deletes and re-creates the task database
    `$BENTOML_HOME/task_result.db` at start, so services sharing one clobber each other."""
    logs = tmp_path_factory.mktemp("logs")
    # COMFYPACK_URL_ALLOW: the tests' file server (URL inputs) is on 127.0.0.1
    managers = {
        n: bentoml_serve(
            EXAMPLES / n / "workflow_api.json",
            logs,
            env={
                "COMFYPACK_COMFYUI_URL": comfyui.url,
                "BENTOML_HOME": str(tmp_path_factory.mktemp(f"bentoml-{n}")),
                "COMFYPACK_URL_ALLOW": "127.0.0.1/32",
            },
        )
        for n in NAMES
    }
    with contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(len(managers)) as pool:
            futures = {n: pool.submit(cm.__enter__) for n, cm in managers.items()}
        out: dict[str, Served] = {}
        failure: BaseException | None = None
        for n, future in futures.items():
            try:
                out[n] = future.result()
                stack.push(managers[n].__exit__)
            except BaseException as e:  # noqa: B036 - re-raised below, after the others stop
                failure = failure or e
        if failure is not None:
            raise failure
        yield out


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """Each example's generated client, imported from a temp dir as ``client_<name>``."""
    import sys

    where = tmp_path_factory.mktemp("clients")
    modules: dict[str, ModuleType] = {}
    for n in NAMES:
        interface = parse_interface(load_workflow(EXAMPLES / n / "workflow_api.json"))
        path = where / f"client_{n}.py"
        path.write_text(generate_client(interface, workflow_name=n), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"client_{n}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        modules[n] = module
    yield modules
    for n in NAMES:
        sys.modules.pop(f"client_{n}", None)


def pixels(data: bytes) -> list[tuple[int, ...]]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return list(im.convert("RGB").getdata())


def close_to(px: tuple[int, ...], want: tuple[int, ...], tol: int = 1) -> bool:
    return max(abs(a - b) for a, b in zip(px, want, strict=True)) <= tol


def frames(data: bytes, kind: str) -> list[Any]:
    import av

    with av.open(io.BytesIO(data)) as container:
        if kind == "audio":
            return [f.to_ndarray() for f in container.decode(audio=0)]
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# ----------------------------------------------------------------------------------------------
# the generated client, one example at a time


def test_text_tools_sync_async_and_jobs(
    served: dict[str, Served], clients: dict[str, ModuleType]
) -> None:
    mod, url = clients["text_tools"], served["text_tools"].url
    with mod.Client(url) as client:
        assert client.is_ready()
        result = client.generate(
            text="Hello",
            suffix=" comfypack",
            case="Title Case",
            needle="Comfy",
            case_sensitive=True,
        )
        assert (result.text, result.length, result.contains) == ("Hello Comfypack", 15, True)
        task = client.submit(text="job", case="lowercase")
        done = client.result(task, poll_interval=0.1)
        assert (done.text, done.length) == ("job comfyui", 11)
        assert client.status(task) == "completed"
        assert client.progress(task)["status"] == "completed"

    async def run() -> Any:
        async with mod.AsyncClient(url) as client:
            return await client.generate()

    result = asyncio.run(run())
    assert (result.text, result.length, result.contains) == ("HELLO COMFYUI", 13, True)


def test_image_adjust_path_pil_and_url(
    served: dict[str, Served],
    clients: dict[str, ModuleType],
    tmp_path: Path,
    file_server: FileServer,
) -> None:
    from PIL import Image

    mod, url = clients["image_adjust"], served["image_adjust"].url
    source = tmp_path / "in.png"
    source.write_bytes(png_bytes(color=(10, 100, 200)))
    with mod.Client(url) as client:
        result = client.generate(image=source, width=48, height=32, upscale_method="bicubic")
        image = result.image
        assert (image.media_type, image.filename) == ("image/png", "image.png")
        assert image.to_pil().size == (48, 32)
        assert all(close_to(px, (245, 155, 55)) for px in pixels(image.data))
        assert image.save(tmp_path) == tmp_path / "image.png"
        by_url = client.generate(
            image=file_server.put("in.png", png_bytes(color=(0, 0, 0))), width=16, height=16
        )
        assert all(close_to(px, (255, 255, 255)) for px in pixels(by_url.image.data))

    async def run() -> Any:
        async with mod.AsyncClient(url) as client:
            return await client.generate(
                image=Image.new("RGB", (20, 20), (200, 100, 0)), width=24, height=8
            )

    result = asyncio.run(run())
    assert result.image.to_pil().size == (24, 8)
    assert all(close_to(px, (55, 155, 255)) for px in pixels(result.image.data))


def test_image_mask_text_every_output_and_seeds(
    served: dict[str, Served], clients: dict[str, ModuleType], tmp_path: Path
) -> None:
    mod, url = clients["image_mask_text"], served["image_mask_text"].url
    attachment = tmp_path / "notes.txt"
    attachment.write_bytes(b"Hello from the client\n")
    image = png_bytes(size=(16, 16), color=(10, 100, 200))
    with mod.Client(url) as client:
        result = client.generate(
            image=image, attachment=attachment, seed=42, noise=0.3, caption="typed"
        )
    assert all(close_to(px, (245, 155, 55)) for px in pixels(result.inverted.data))
    assert result.inverted.media_type == "image/png" and result.mask.media_type == "image/webp"
    assert result.noisy.to_pil().size == (16, 16)
    assert (result.caption, result.width, result.seeds.seed) == ("typed", 16, 42)
    assert result.attachment.data == b"Hello from the client\n"

    async def run() -> Any:
        async with mod.AsyncClient(url) as client:
            first = await client.generate(image=image, attachment=b"x", noise=0.3)
            again = await client.generate(
                image=image, attachment=b"x", noise=0.3, seed=first.seeds.seed
            )
            return first, again

    first, again = asyncio.run(run())
    assert isinstance(first.seeds.seed, int) and 0 <= first.seeds.seed < 2**53
    assert pixels(first.noisy.data) == pixels(again.noisy.data)  # the reported seed reproduces it


def test_audio_volume_raw_file_answer(
    served: dict[str, Served], clients: dict[str, ModuleType]
) -> None:
    mod, url = clients["audio_volume"], served["audio_volume"].url
    with mod.Client(url) as client:
        result = client.generate(audio=wav_bytes(), gain_db=-6)
    assert (result.audio.media_type, result.audio.filename) == ("audio/flac", "audio.flac")
    assert result.audio.data[:4] == b"fLaC" and frames(result.audio.data, "audio")

    async def run() -> Any:
        async with mod.AsyncClient(url) as client:
            return await client.generate(audio=EXAMPLES / "audio_volume" / "example.wav")

    result = asyncio.run(run())
    assert result.audio.media_type == "audio/flac" and frames(result.audio.data, "audio")


def test_video_invert_file_and_number(
    served: dict[str, Served], clients: dict[str, ModuleType]
) -> None:
    mod, url = clients["video_invert"], served["video_invert"].url
    with mod.Client(url) as client:
        result = client.generate(video=mp4_bytes(color=(40, 120, 200)))
    assert (result.video.media_type, result.video.filename) == ("video/mp4", "video.mp4")
    decoded = frames(result.video.data, "video")
    assert decoded and close_to(tuple(int(v) for v in decoded[0][8, 8]), (215, 135, 55), tol=12)
    assert result.fps > 0

    async def run() -> Any:
        async with mod.AsyncClient(url) as client:
            return await client.generate(video=str(EXAMPLES / "video_invert" / "example.mp4"))

    result = asyncio.run(run())
    assert (
        result.video.data[4:8] == b"ftyp" and frames(result.video.data, "video") and result.fps > 0
    )


def test_a_service_error_is_a_typed_error_naming_the_field(
    served: dict[str, Served], clients: dict[str, ModuleType]
) -> None:
    mod, url = clients["image_adjust"], served["image_adjust"].url
    with mod.Client(url) as client, pytest.raises(mod.ComfyPackAPIError) as info:
        client.generate(image=b"this is not a png")
    err = info.value
    assert (err.status, err.type, err.fields) == (422, "input_error", ["image"])
    assert "image" in err.message

    async def run() -> None:
        async with mod.AsyncClient(url) as client:
            await client.generate(image="http://127.0.0.1:9/nothing.png")

    with pytest.raises(mod.ComfyPackAPIError) as info:
        asyncio.run(run())
    assert info.value.status == 422 and info.value.fields == ["image"]


# ----------------------------------------------------------------------------------------------
# BentoML's own client


def data_uri(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def test_bentoml_sync_http_client(served: dict[str, Served]) -> None:
    import bentoml

    with bentoml.SyncHTTPClient(served["text_tools"].url) as client:
        assert client.is_ready()
        assert client.generate(text="hello", case="Title Case") == {
            "text": "Hello Comfyui",
            "length": 13,
            "contains": True,
        }
        # jobs: .submit() is broken in BentoML itself; the raw route and get_status / get work
        task_id = client.request("POST", "/generate/submit", json={"text": "job"}).json()["task_id"]
        deadline = time.monotonic() + 60
        while client.generate.get_status(task_id).value == "in_progress":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.generate.get(task_id) == {
            "text": "JOB COMFYUI",
            "length": 11,
            "contains": True,
        }

    image = png_bytes(size=(16, 16), color=(10, 100, 200))
    with bentoml.SyncHTTPClient(served["image_mask_text"].url) as client:
        out = client.generate(
            image=data_uri(image, "image/png"), attachment=base64.b64encode(b"x").decode(), seed=3
        )
        assert out["caption"] == "a picture" and out["seeds"] == {"seed": 3}
        inverted = base64.b64decode(out["inverted"].partition(",")[2])
        assert all(close_to(px, (245, 155, 55)) for px in pixels(inverted))

    with bentoml.SyncHTTPClient(served["image_adjust"].url) as client:
        # a single-file answer: only through the raw route (see the module docstring)
        response = client.request("POST", "/generate", json={"image": data_uri(image, "image/png")})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert all(close_to(px, (245, 155, 55)) for px in pixels(response.content))
        bad = client.request("POST", "/generate", json={"image": "eA=="})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "image"
