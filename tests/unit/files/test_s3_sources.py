"""``s3://bucket/key`` model sources: in sources files and locks, fetched with boto3's
credentials from a real S3-compatible server (moto's, on 127.0.0.1) and verified by sha256."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _s3server import S3Server, s3_server
from pydantic import ValidationError

from comfypack.errors import RestoreError
from comfypack.files.download import download
from comfypack.lock.sources import ModelFile, SourcesFile, classify_url
from comfypack.lockfile import ModelSource

DATA = b"safetensors-ish model bytes " * 4096


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        client = server.client()
        client.create_bucket(Bucket="models")  # type: ignore[attr-defined]
        client.put_object(Bucket="models", Key="sd/tiny.safetensors", Body=DATA)  # type: ignore[attr-defined]
        client.put_object(Bucket="models", Key="sd/other.safetensors", Body=DATA[:-1] + b"X")  # type: ignore[attr-defined]
        yield server


@pytest.fixture()
def aws_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3


def test_s3_urls_are_sources_of_their_own_type(tmp_path: Path) -> None:
    src = classify_url("s3://models/sd/tiny.safetensors")
    assert (src.type, src.url) == ("s3", "s3://models/sd/tiny.safetensors")
    for bad in ("s3://models", "s3://models/", "s3:///key", "s3://models/k?versionId=1"):
        with pytest.raises(ValueError):
            classify_url(bad)
    with pytest.raises(ValidationError):  # the type and the scheme go together
        ModelSource(type="url", url="s3://models/k")
    with pytest.raises(ValidationError):
        ModelSource(type="s3", url="https://example.com/k")
    digest = hashlib.sha256(DATA).hexdigest()
    f = tmp_path / "sources.json"
    f.write_text(
        json.dumps(
            {
                digest: "s3://models/sd/tiny.safetensors",
                "tiny.safetensors": ["s3://models/sd/tiny.safetensors"],
            }
        )
    )
    model = ModelFile(
        folder="checkpoints",
        path="tiny.safetensors",
        size=len(DATA),
        sha256=digest,
        local_path=tmp_path / "tiny.safetensors",
    )
    sources = SourcesFile(f)
    assert [(s.type, s.url) for s in sources.resolve(model)] == [
        ("s3", "s3://models/sd/tiny.safetensors")
    ]
    assert sources.by_name["tiny.safetensors"][0].type == "s3"


def test_an_s3_source_downloads_verified(aws_env: S3Server, tmp_path: Path) -> None:
    digest = hashlib.sha256(DATA).hexdigest()
    src = ModelSource(type="s3", url="s3://models/sd/tiny.safetensors")
    out = download(src, tmp_path / digest, sha256=digest, size=len(DATA), progress=False)
    assert out.read_bytes() == DATA


def test_an_s3_object_that_is_not_the_locked_file_is_refused(
    aws_env: S3Server, tmp_path: Path
) -> None:
    digest = hashlib.sha256(DATA).hexdigest()
    src = ModelSource(type="s3", url="s3://models/sd/other.safetensors")
    with pytest.raises(RestoreError) as e:
        download(src, tmp_path / digest, sha256=digest, size=len(DATA), progress=False)
    assert "s3://models/sd/other.safetensors is not the locked file" in e.value.message
    assert "X-Amz-Signature" not in e.value.message and "X-Amz-Signature" not in json.dumps(
        e.value.details
    )
    assert not (tmp_path / digest).exists() and not list(tmp_path.iterdir())
    missing = ModelSource(type="s3", url="s3://models/sd/none.safetensors")
    with pytest.raises(RestoreError) as e:
        download(missing, tmp_path / digest, sha256=digest, size=len(DATA), progress=False)
    assert "cannot download s3://models/sd/none.safetensors: HTTP 404" in e.value.message
    assert "Signature" not in e.value.message
