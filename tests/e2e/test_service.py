"""End to end: a real `comfypack serve` (bentoml serve) over a real headless ComfyUI, real HTTP.

Two ways of running ComfyUI are covered: the service starting its own (``own``), and the
service attaching to a running one by URL (``attached`` — the session's ``comfyui`` fixture),
which also lets the bad-input tests prove ComfyUI was never reached (its history is unchanged).
URL inputs come from a local HTTP server on 127.0.0.1 that stands in for the internet.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES, FileServer, Served, bentoml_serve, png_bytes, wav_bytes

pytestmark = pytest.mark.e2e

MULTI = EXAMPLES / "image_mask_text" / "workflow_api.json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_uri(data: bytes, media: str) -> str:
    return f"data:{media};base64,{b64(data)}"


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    head, _, payload = uri.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head
    return head[5:-7], base64.b64decode(payload)


def pixels(data: bytes) -> list[tuple[int, ...]]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return list(im.convert("RGB").getdata())


@pytest.fixture(scope="module")
def attached(comfyui: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The multi-output example served against the session's ComfyUI (attach by URL)."""
    with bentoml_serve(
        MULTI,
        tmp_path_factory.mktemp("logs"),
        # the tests' file server is on 127.0.0.1: allowed, as an operator would
        env={
            "COMFYPACK_COMFYUI_URL": comfyui.url,  # type: ignore[attr-defined]
            "COMFYPACK_URL_ALLOW": "127.0.0.1/32",
        },
    ) as served:
        yield served


@pytest.fixture(scope="module")
def own_audio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A single-file-output example; the service starts its own ComfyUI."""
    with bentoml_serve(
        EXAMPLES / "audio_volume" / "workflow_api.json", tmp_path_factory.mktemp("logs")
    ) as served:
        yield served


def history_size(comfyui: object) -> int:
    return len(httpx.get(f"{comfyui.url}/history", timeout=10).json())  # type: ignore[attr-defined]


def check_multi_outputs(out: dict, image: bytes, attachment: bytes, caption: str) -> None:
    assert set(out) == {"inverted", "mask", "noisy", "caption", "width", "attachment", "seeds"}
    media, inv = decode_data_uri(out["inverted"])
    assert media == "image/png"
    assert all(
        max(abs(a - b) for a, b in zip(px, (245, 155, 55), strict=True)) <= 1 for px in pixels(inv)
    )
    media, mask = decode_data_uri(out["mask"])
    assert media == "image/webp"
    assert out["caption"] == caption
    assert out["width"] == 16
    assert decode_data_uri(out["attachment"])[1] == attachment
    assert isinstance(out["seeds"]["seed"], int)


# -- inputs: JSON / base64, multipart, URL ---------------------------------------------------------


def test_json_base64_and_data_uri(attached: Served) -> None:
    image = png_bytes(color=(10, 100, 200))
    attachment = bytes(range(256))
    body = {
        "image": data_uri(image, "image/png"),
        "attachment": b64(attachment),
        "caption": "json",
        "seed": 7,
        "noise": 0.2,
    }
    r = httpx.post(f"{attached.url}/generate", json=body, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    check_multi_outputs(out, image, attachment, "json")
    assert out["seeds"] == {"seed": 7}
    assert json.loads(r.headers["x-comfypack-seeds"]) == {"seed": 7}
    # the same seed reproduces the same noise
    again = httpx.post(f"{attached.url}/generate", json=body, timeout=120).json()
    assert pixels(decode_data_uri(again["noisy"])[1]) == pixels(decode_data_uri(out["noisy"])[1])


def test_random_seed_is_reported_and_reproducible(attached: Served) -> None:
    image = png_bytes(color=(90, 90, 90))
    body = {"image": b64(image), "attachment": b64(b"x"), "noise": 0.5}
    first = httpx.post(f"{attached.url}/generate", json=body, timeout=120).json()
    seed = first["seeds"]["seed"]
    assert 0 <= seed < 2**53
    replay = httpx.post(f"{attached.url}/generate", json={**body, "seed": seed}, timeout=120).json()
    assert pixels(decode_data_uri(replay["noisy"])[1]) == pixels(decode_data_uri(first["noisy"])[1])


def test_multipart_upload(attached: Served) -> None:
    image = png_bytes(color=(10, 100, 200))
    attachment = b"\x00\x01binary\xff" * 10
    r = httpx.post(
        f"{attached.url}/generate",
        files={"image": ("in.png", image, "image/png"), "attachment": ("a.bin", attachment)},
        data={"caption": "12345", "noise": "0.1"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    check_multi_outputs(r.json(), image, attachment, "12345")  # "12345" stays a string


def test_url_inputs(attached: Served, file_server: FileServer) -> None:
    image = png_bytes(color=(10, 100, 200))
    attachment = b"from a URL"
    body = {
        "image": file_server.put("in.png", image),
        "attachment": file_server.put("a.txt", attachment),
        "caption": "url",
    }
    r = httpx.post(f"{attached.url}/generate", json=body, timeout=120)
    assert r.status_code == 200, r.text
    check_multi_outputs(r.json(), image, attachment, "url")


def test_single_file_output_is_the_file(own_audio: Served) -> None:
    import av

    def peak(gain_db: int) -> float:
        r = httpx.post(
            f"{own_audio.url}/generate",
            files={"audio": ("a.wav", wav_bytes(amplitude=0.5), "audio/wav")},
            data={"gain_db": str(gain_db)},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "audio/flac"
        with av.open(io.BytesIO(r.content)) as container:
            frames = [f.to_ndarray().astype("float64") for f in container.decode(audio=0)]
        return max(float(abs(f).max()) for f in frames)

    ratio = peak(-6) / peak(0)
    assert 0.501 * 0.97 < ratio < 0.501 * 1.03, ratio


def test_readyz_livez_docs(own_audio: Served) -> None:
    assert httpx.get(f"{own_audio.url}/readyz").status_code == 200
    assert httpx.get(f"{own_audio.url}/livez").status_code == 200
    docs = httpx.get(f"{own_audio.url}/docs", follow_redirects=True)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# -- bad inputs: each a 4xx naming the field, ComfyUI never reached --------------------------------


BAD = {
    "wrong type": ({"image": "{png}", "attachment": "eA==", "noise": "loud"}, "noise", 422),
    "out of range": ({"image": "{png}", "attachment": "eA==", "noise": 1.5}, "noise", 422),
    "unknown field": ({"image": "{png}", "attachment": "eA==", "colour": "red"}, "colour", 422),
    "missing required": ({"attachment": "eA=="}, "image", 422),
    "not an image": ({"image": b64(b"this is not a png"), "attachment": "eA=="}, "image", 422),
    "bad base64": ({"image": "not base64 at all!!", "attachment": "eA=="}, "image", 422),
    "unreachable URL": (
        {"image": "http://127.0.0.1:9/nothing.png", "attachment": "eA=="},
        "image",
        422,
    ),
    "file URL": ({"image": "file:///etc/passwd", "attachment": "eA=="}, "image", 422),
    "too long": ({"image": "{png}", "attachment": "eA==", "caption": "x" * 201}, "caption", 422),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_4xx_naming_the_field(case: str, attached: Served, comfyui: object) -> None:
    body, field, status = BAD[case]
    body = {k: (b64(png_bytes()) if v == "{png}" else v) for k, v in body.items()}
    before = history_size(comfyui)
    r = httpx.post(f"{attached.url}/generate", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"type", "message", "details"}
    assert field in err["message"]
    assert field in [d["field"] for d in err["details"]]
    assert history_size(comfyui) == before, "ComfyUI must not be reached for a bad input"


def test_not_json_body(attached: Served) -> None:
    r = httpx.post(
        f"{attached.url}/generate", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_body"


# -- /docs.json shows every input of every example, as `comfypack inspect` does ------------------


@pytest.mark.parametrize(
    "example", sorted(p.name for p in EXAMPLES.iterdir() if (p / "workflow_api.json").is_file())
)
def test_openapi_matches_inspect(example: str, comfyui: object, tmp_path: Path) -> None:
    workflow = EXAMPLES / example / "workflow_api.json"
    document = json.loads(
        subprocess.run(
            [sys.executable, "-m", "comfypack.cli", "inspect", "--json", str(workflow)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    inspected = document["input_schema"]
    files = {
        s["name"] for s in document["inputs"] if s["kind"] in ("image", "audio", "video", "file")
    }
    with bentoml_serve(workflow, tmp_path, env={"COMFYPACK_COMFYUI_URL": comfyui.url}) as served:  # type: ignore[attr-defined]
        spec = httpx.get(f"{served.url}/docs.json").json()
    ref = spec["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    body = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(body["properties"]) == set(inspected["properties"])
    for name, prop in inspected["properties"].items():
        shown = body["properties"][name]
        keys = ("default", "minimum", "maximum", "enum", "maxLength")  # file fields: text in JSON
        if name not in files:
            keys += ("description",)
        for key in keys:
            assert shown.get(key) == prop.get(key), (example, name, key)
        # OpenAPI 3.0 spells a nullable type (a Seed: null = random) as `nullable`
        types = prop["type"] if isinstance(prop.get("type"), list) else [prop.get("type")]
        assert shown.get("type") == [t for t in types if t != "null"][0], (example, name)
        assert shown.get("nullable", False) == ("null" in types), (example, name)
        if name in files:
            assert prop["description"] in shown["description"]
    assert sorted(body.get("required", [])) == sorted(inspected["required"])


def test_stopping_the_service_stops_its_comfyui(tmp_path: Path) -> None:
    import psutil

    with bentoml_serve(EXAMPLES / "text_tools" / "workflow_api.json", tmp_path) as served:
        kids = psutil.Process(served.proc.pid).children(recursive=True)
        comfy = [p for p in kids if any(a.endswith("main.py") for a in p.cmdline())]
        assert len(comfy) == 1, [p.cmdline() for p in kids]
        assert "--listen" in comfy[0].cmdline() and "127.0.0.1" in comfy[0].cmdline()
        r = httpx.post(f"{served.url}/generate", json={"text": "x"}, timeout=60)
        assert r.status_code == 200 and r.json()["text"] == "X COMFYUI"
    # bentoml_serve sent SIGTERM to the server's process group; ComfyUI runs in its own session
    # and must go with it (shutdown hook, or PR_SET_PDEATHSIG if the worker died first).
    gone, alive = psutil.wait_procs(comfy, timeout=20)
    assert not alive, f"ComfyUI outlived the service: {[p.pid for p in alive]}"
