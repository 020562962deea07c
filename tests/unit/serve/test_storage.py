"""comfypack.serve.storage: outputs uploaded to a real S3-compatible server, answered as signed URLs.

The server is moto's, a separate process on 127.0.0.1 (tests/_s3server.py says why that one);
boto3 reaches it through the same settings a deployment uses, and the signed URLs are fetched
with plain HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from _s3server import S3Server, s3_server

from comfypack.comfyui.runner import OutputFile, RunOutput
from comfypack.errors import ComfyPackError, RequestError, ServiceError
from comfypack.files.s3 import s3_client
from comfypack.serve.storage import OutputStore, StorageSettings, choose_mode, job_prefix


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        server.client().create_bucket(Bucket="outputs")  # type: ignore[attr-defined]
        yield server


@pytest.fixture()
def aws_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3


def test_settings_from_env_and_their_checks() -> None:
    s = StorageSettings.from_env(
        {
            "COMFYPACK_S3_BUCKET": "b",
            "COMFYPACK_S3_PREFIX": "svc/a",
            "COMFYPACK_S3_URL_EXPIRES": "60",
        }
    )
    assert (s.bucket, s.prefix, s.expires, s.modes, s.enabled) == ("b", "svc/a", 60, ("url",), True)
    assert (
        StorageSettings.from_env({}).modes == ("inline",)
        and not StorageSettings.from_env({}).enabled
    )
    both = StorageSettings.from_env({"COMFYPACK_S3_BUCKET": "b", "COMFYPACK_OUTPUTS": "inline,url"})
    assert both.modes == ("inline", "url")
    for bad in (
        {"COMFYPACK_OUTPUTS": "url"},  # no bucket
        {"COMFYPACK_S3_BUCKET": "b", "COMFYPACK_OUTPUTS": "ftp"},
        {"COMFYPACK_S3_BUCKET": "b", "COMFYPACK_S3_URL_EXPIRES": "-1"},
        {"COMFYPACK_S3_BUCKET": "b", "COMFYPACK_S3_URL_EXPIRES": str(8 * 24 * 3600)},
        {"COMFYPACK_S3_BUCKET": "b", "COMFYPACK_S3_PREFIX": "../x"},
    ):
        with pytest.raises(ComfyPackError):
            StorageSettings.from_env(bad)


def test_per_request_choice_only_among_what_is_enabled() -> None:
    both = StorageSettings(bucket="b", modes=("url", "inline"))
    assert choose_mode(None, both) == "url" and choose_mode("INLINE", both) == "inline"
    with pytest.raises(RequestError):
        choose_mode("", both)  # a header sent empty is a mistake, not a default
    with pytest.raises(RequestError) as e:
        choose_mode("url", StorageSettings())
    assert e.value.status == 422 and "inline" in e.value.message
    assert job_prefix(None) == "" and job_prefix("team-a/run_1") == "team-a/run_1/"
    for bad in ("", "../up", "/abs", "a//b", "a b", "x" * 70):
        with pytest.raises(RequestError):
            job_prefix(bad)


def _result() -> RunOutput:
    files = [
        OutputFile(b"\x89PNG first" * 50, "image/png", "out_00001_.png"),
        OutputFile(b"\x89PNG second" * 50, "image/png", "out_00002_.png"),
    ]
    wav = OutputFile(b"RIFF....WAVE" * 20, "audio/wav", "sound.wav")
    return RunOutput("p1", {"images": files, "sound": [wav], "caption": ["hello"]}, {}, {"seed": 7})


def test_every_file_lands_in_the_bucket_and_its_signed_url_downloads_the_same_bytes(
    aws_env: S3Server,
) -> None:
    store = OutputStore(
        StorageSettings(bucket="outputs", prefix="svc", expires=120, modes=("url",))
    )
    store.check()
    result = _result()
    urls = asyncio.run(store.store(result, "job-42", job_prefix("team-a")))
    answer = result.to_json(urls)
    assert answer["caption"] == "hello" and answer["seeds"] == {"seed": 7}
    assert isinstance(answer["images"], list) and len(answer["images"]) == 2
    expected = {
        "svc/team-a/job-42/images/out_00001_.png": result.outputs["images"][0],
        "svc/team-a/job-42/images/1-out_00002_.png": result.outputs["images"][1],
        "svc/team-a/job-42/sound/sound.wav": result.outputs["sound"][0],
    }
    client = aws_env.client()
    listed = client.list_objects_v2(Bucket="outputs", Prefix="svc/team-a/job-42/")  # type: ignore[attr-defined]
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(expected)
    for url, (key, f) in zip([*answer["images"], answer["sound"]], expected.items(), strict=True):
        parts = urlsplit(url)
        assert parts.path == f"/outputs/{key}" and url.startswith(aws_env.url)
        query = parse_qs(parts.query)
        assert query["X-Amz-Expires"] == ["120"] and query["X-Amz-Algorithm"] == [
            "AWS4-HMAC-SHA256"
        ]
        assert "X-Amz-Signature" in query
        got = httpx.get(url, timeout=10)  # no credentials: the URL carries them
        assert got.status_code == 200 and got.content == f.data
        assert got.headers["content-type"] == f.media_type
        stored = client.get_object(Bucket="outputs", Key=key)  # type: ignore[attr-defined]
        assert stored["Body"].read() == f.data


def test_inline_answers_stay_data_uris() -> None:
    answer = _result().to_json()
    assert answer["images"][0].startswith("data:image/png;base64,")
    assert answer["sound"].startswith("data:audio/wav;base64,")


def test_an_unreachable_bucket_is_a_clear_error(aws_env: S3Server) -> None:
    store = OutputStore(StorageSettings(bucket="no-such-bucket", modes=("url",)))
    with pytest.raises(ServiceError) as e:
        store.check()
    assert "no-such-bucket" in e.value.message
    with pytest.raises(ServiceError) as e:
        asyncio.run(store.store(_result(), "job-1"))
    assert "NoSuchBucket" in e.value.message and "Signature" not in e.value.message


def test_the_endpoint_setting_wins_over_the_environment(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    client = s3_client(s3.url)
    assert client.meta.endpoint_url == s3.url
    client.head_bucket(Bucket="outputs")
