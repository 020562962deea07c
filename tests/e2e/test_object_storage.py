"""End to end: file outputs uploaded to an S3-compatible bucket and answered as signed URLs.

The bucket lives in moto's S3 server, started by the test on 127.0.0.1 (tests/_s3server.py says
why that server); the service reaches it through boto3's usual settings (credentials and region
from the environment, the endpoint from ``COMFYPACK_S3_ENDPOINT``), as a deployment would reach
R2 or MinIO. The multi-output example runs over the session's real headless ComfyUI; every
file it answers must be in the bucket under the service's and the request's prefix, and its URL
must download exactly the stored bytes — without the service's API key.
"""

from __future__ import annotations

import base64
import http.server
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from _s3server import S3Server, s3_server
from conftest import EXAMPLES, Served, bentoml_serve, http_server, png_bytes

pytestmark = pytest.mark.e2e

MULTI = EXAMPLES / "image_mask_text" / "workflow_api.json"
AUDIO = EXAMPLES / "audio_volume" / "workflow_api.json"
FILE_OUTPUTS = ("inverted", "mask", "noisy", "attachment")
KEY = "e2e-storage-key"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        server.client().create_bucket(Bucket="outputs")  # type: ignore[attr-defined]
        yield server


def _settings(s3: S3Server, **extra: str) -> dict[str, str]:
    return {
        **s3.env(),
        "COMFYPACK_S3_BUCKET": "outputs",
        "COMFYPACK_S3_ENDPOINT": s3.url,
        "COMFYPACK_S3_PREFIX": "svc",
        "COMFYPACK_S3_URL_EXPIRES": "600",
        "COMFYPACK_API_KEY": KEY,
        **extra,
    }


@pytest.fixture(scope="module")
def stored(
    comfyui: object, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with bentoml_serve(
        MULTI,
        tmp_path_factory.mktemp("store"),
        env=_settings(s3, COMFYPACK_OUTPUTS="url,inline"),
        comfyui_url=comfyui.url,
    ) as served:  # type: ignore[attr-defined]
        yield served


def _body(attachment: bytes) -> dict[str, Any]:
    return {
        "image": base64.b64encode(png_bytes(color=(30, 60, 90))).decode(),
        "attachment": base64.b64encode(attachment).decode(),
        "caption": "stored",
        "seed": 5,
        "noise": 0.1,
    }


def _key_of(url: str) -> str:
    path = unquote(urlsplit(url).path)
    assert path.startswith("/outputs/"), url
    return path.removeprefix("/outputs/")


def _check_stored(s3: S3Server, answer: dict[str, Any], prefix: str) -> dict[str, bytes]:
    """Every file output is a signed URL to an object under ``prefix`` whose bytes it downloads."""
    client: Any = s3.client()
    got: dict[str, bytes] = {}
    for name in FILE_OUTPUTS:
        urls = answer[name] if isinstance(answer[name], list) else [answer[name]]
        for url in urls:
            assert url.startswith(s3.url + "/outputs/"), url
            query = parse_qs(urlsplit(url).query)
            assert query["X-Amz-Expires"] == ["600"] and "X-Amz-Signature" in query
            key = _key_of(url)
            assert key.startswith(f"{prefix}{name}/"), (key, prefix)
            downloaded = httpx.get(url, timeout=30)  # no API key: the URL is the credential
            assert downloaded.status_code == 200
            in_bucket = client.get_object(Bucket="outputs", Key=key)["Body"].read()
            assert downloaded.content == in_bucket and in_bucket
            got[name] = in_bucket
    listed = client.list_objects_v2(Bucket="outputs", Prefix=prefix).get("Contents", [])
    assert len(listed) == sum(
        len(answer[n]) if isinstance(answer[n], list) else 1 for n in FILE_OUTPUTS
    )
    return got


def _pixels(data: bytes) -> list[tuple[int, ...]]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return list(im.convert("RGB").getdata())


def test_every_output_lands_in_the_bucket_and_its_url_downloads_the_same_bytes(
    stored: Served, s3: S3Server, comfyui: Any
) -> None:
    attachment = bytes(range(256)) * 3
    headers = {"Authorization": f"Bearer {KEY}", "X-Request-ID": "store-req-1"}
    r = httpx.post(f"{stored.url}/generate", json=_body(attachment), headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["caption"] == "stored" and answer["seeds"] == {"seed": 5}
    files = _check_stored(s3, answer, "svc/store-req-1/")
    # nothing of the run is left in ComfyUI's output folder once uploaded
    run_id = r.headers["x-comfypack-prompt-id"]
    assert run_id and not list((comfyui.output_dir / "comfypack").glob(f"{run_id}_*"))
    assert files["attachment"] == attachment  # the file output is the file sent, byte for byte
    # the same request answered inline: the same images
    inline = httpx.post(
        f"{stored.url}/generate",
        json=_body(attachment),
        timeout=120,
        headers={**headers, "X-ComfyPack-Outputs": "inline"},
    ).json()
    for name in ("inverted", "noisy"):
        data = base64.b64decode(inline[name].partition(",")[2])
        assert inline[name].startswith("data:image/") and _pixels(data) == _pixels(files[name])


def test_a_job_with_its_own_prefix(stored: Served, s3: S3Server) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "X-ComfyPack-Output-Prefix": "team-a/batch1"}
    sub = httpx.post(
        f"{stored.url}/generate/submit", json=_body(b"job file"), headers=headers, timeout=30
    )
    assert sub.status_code == 200, sub.text
    task_id = sub.json()["task_id"]
    auth = {"Authorization": f"Bearer {KEY}"}
    import time

    deadline = time.monotonic() + 120
    while httpx.get(
        f"{stored.url}/generate/status", params={"task_id": task_id}, headers=auth
    ).json()["status"] in ("pending", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    result = httpx.get(f"{stored.url}/generate/get", params={"task_id": task_id}, headers=auth)
    assert result.status_code == 200, result.text
    files = _check_stored(s3, result.json(), f"svc/team-a/batch1/{task_id}/")
    assert files["attachment"] == b"job file"


def test_bad_delivery_headers_are_refused_before_running(stored: Served) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    for header, value in (
        ("X-ComfyPack-Outputs", "ftp"),
        ("X-ComfyPack-Output-Prefix", "../escape"),
    ):
        r = httpx.post(
            f"{stored.url}/generate/submit",
            json=_body(b"x"),
            timeout=30,
            headers={**auth, header: value},
        )
        assert r.status_code == 422, r.text


def test_a_single_file_output_is_answered_as_its_url(
    comfyui: object, s3: S3Server, tmp_path: Any
) -> None:
    from conftest import wav_bytes

    with bentoml_serve(
        AUDIO,
        tmp_path,
        env=_settings(s3, COMFYPACK_OUTPUTS="url", COMFYPACK_S3_PREFIX="audio"),
        comfyui_url=comfyui.url,
    ) as served:  # type: ignore[attr-defined]
        r = httpx.post(
            f"{served.url}/generate",
            timeout=120,
            headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": "audio-1"},
            json={"audio": base64.b64encode(wav_bytes()).decode()},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), (
            r.text
        )
        ((name, url),) = ((k, v) for k, v in r.json().items() if k != "seeds")
        key = _key_of(url)
        assert key.startswith(f"audio/audio-1/{name}/")
        downloaded = httpx.get(url, timeout=30)
        client: Any = s3.client()
        assert downloaded.content == client.get_object(Bucket="outputs", Key=key)["Body"].read()
        assert (
            downloaded.content[:4] in (b"fLaC", b"RIFF", b"OggS", b"ID3\x03")
            or len(downloaded.content) > 100
        )
        # inline is not offered by this service
        refused = httpx.post(
            f"{served.url}/generate",
            timeout=30,
            headers={"Authorization": f"Bearer {KEY}", "X-ComfyPack-Outputs": "inline"},
            json={"audio": base64.b64encode(wav_bytes()).decode()},
        )
        assert refused.status_code == 422 and "url" in refused.json()["error"]["message"]


class _Sink(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that takes everything (for the fuzzer's positive cases)."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_schemathesis_with_the_delivery_headers_documented(
    comfyui: object, s3: S3Server, tmp_path: Any
) -> None:
    """With storage (url and inline) and webhooks on, the document names X-ComfyPack-Outputs,
    -Output-Prefix and -Callback-Url; schemathesis (--checks all) sends them, valid and not, to
    the typed endpoint and its jobs and finds nothing (the routes of issue 19, not /api/v2)."""
    import json
    import os
    import subprocess

    from test_openapi import _WARNINGS, HOOKS, _schemathesis

    image = EXAMPLES / "image_adjust" / "workflow_api.json"
    env = {
        k: v
        for k, v in _settings(s3, COMFYPACK_OUTPUTS="url,inline").items()
        if k != "COMFYPACK_API_KEY"
    }
    env["COMFYPACK_WEBHOOK_SECRET"] = "schemathesis-webhook-secret"
    env["COMFYPACK_URL_ALLOW"] = "127.0.0.1/32"
    with (
        http_server(_Sink) as sink,
        bentoml_serve(image, tmp_path, env=env, comfyui_url=comfyui.url) as served,
    ):  # type: ignore[attr-defined]
        doc = httpx.get(f"{served.url}/docs.json").json()
        params = {p["name"] for p in doc["paths"]["/generate"]["post"]["parameters"]}
        assert params == {
            "X-ComfyPack-Callback-Url",
            "X-ComfyPack-Outputs",
            "X-ComfyPack-Output-Prefix",
        }
        assert (
            doc["paths"]["/generate/submit"]["post"]["parameters"]
            == doc["paths"]["/generate"]["post"]["parameters"]
        )
        st_env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "valid_media",
            "COMFYPACK_ST_FILE_FIELDS": json.dumps({"image": "image"}),
            "COMFYPACK_ST_CALLBACK": sink + "/hook",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])),
        }
        run = subprocess.run(
            [
                *_schemathesis(),
                "run",
                f"{served.url}/docs.json",
                "--url",
                served.url,
                "--checks",
                "all",
                "--max-examples",
                "8",
                "--seed",
                "1",
                "--request-timeout",
                "120",
                "--no-color",
                "--include-path-regex",
                "^/generate",
                # runs of up to 2 Mpx on a shared CPU: latency is not what is tested here
                "--max-response-time",
                "60",
                "--warnings",
                ",".join(_WARNINGS),
            ],
            capture_output=True,
            text=True,
            env=st_env,
            cwd=tmp_path,
            timeout=540,
        )
        report = run.stdout[-6000:] + run.stderr[-2000:]
        assert run.returncode == 0, report
        assert "No issues found" in run.stdout, report
