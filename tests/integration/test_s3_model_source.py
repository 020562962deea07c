"""An ``s3://bucket/key`` model source: locked from a sources file, restored verified.

The round trip of tests/integration/test_lock_pack_restore.py (a small random-weight upscale
model in a copy of the provisioned ComfyUI), with the model in a bucket of moto's S3 server on
127.0.0.1 (tests/_s3server.py says why that server) instead of on a web server: the lock records
the ``s3`` source, ``comfypack unpack`` in a fresh COMFYPACK_HOME fetches it with boto3's
credentials and endpoint from the environment and verifies its sha256; an object that is not the
locked file is refused without reaching the cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from _s3server import s3_server
from test_lock_pack_restore import (
    MODEL,
    WORKFLOW,
    _comfypack,
    _copy_comfyui,
    _invoke,
    _seed_wheels,
    _tiny_upscale_model,
)

from comfypack.lockfile import loads

pytestmark = pytest.mark.integration


def test_an_s3_model_source_restores_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comfy = _copy_comfyui(tmp_path / "author" / "comfyui")
    model = comfy / "models" / "upscale_models" / MODEL
    _tiny_upscale_model(model)
    data = model.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    wf = tmp_path / "upscale" / "workflow_api.json"
    wf.parent.mkdir()
    wf.write_text(json.dumps(WORKFLOW, indent=2))
    (comfy / "input" / "in.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # the input node's default asset

    with s3_server(tmp_path) as s3:
        client = s3.client()
        client.create_bucket(Bucket="models")  # type: ignore[attr-defined]
        client.put_object(Bucket="models", Key=f"upscale/{MODEL}", Body=data)  # type: ignore[attr-defined]
        url = f"s3://models/upscale/{MODEL}"
        sources = tmp_path / "sources.json"
        sources.write_text(json.dumps({digest: url}))

        home1 = tmp_path / "home-author"
        pack = tmp_path / "upscale.cpack.zip"
        code, out = _invoke(
            monkeypatch,
            home1,
            "pack",
            str(wf),
            "--comfyui",
            str(comfy),
            "--sources",
            str(sources),
            "--offline",
            "-o",
            str(pack),
        )
        assert code == 0, out
        code, out = _invoke(
            monkeypatch,
            home1,
            "lock",
            str(wf),
            "--comfyui",
            str(comfy),
            "--sources",
            str(sources),
            "--offline",
            "-o",
            str(tmp_path / "lock.json"),
        )
        assert code == 0, out
        (m,) = loads((tmp_path / "lock.json").read_text()).models
        assert [(s.type, s.url) for s in m.sources] == [("s3", url)] and m.sha256 == digest

        # a fresh machine: only the pack, and boto3's settings in the environment
        home2 = tmp_path / "home-elsewhere"
        _seed_wheels(home2)
        ws = tmp_path / "elsewhere" / "ws"
        r = _comfypack("unpack", str(pack), "--dir", str(ws), "--no-venv", home=home2, env=s3.env())
        assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
        cached = home2 / "models" / "sha256" / digest
        assert cached.read_bytes() == data
        assert (ws / "comfyui" / "models" / "upscale_models" / MODEL).read_bytes() == data
        assert "X-Amz-Signature" not in r.stdout + r.stderr  # the signed URL is never shown

        # the bucket's object changed: refused, named by its s3:// URL, the cache untouched
        client.put_object(
            Bucket="models", Key=f"upscale/{MODEL}", Body=data[:-1] + bytes([data[-1] ^ 1])
        )  # type: ignore[attr-defined]
        home3 = tmp_path / "home-third"
        _seed_wheels(home3)
        r = _comfypack(
            "unpack",
            str(pack),
            "--dir",
            str(tmp_path / "third" / "ws"),
            "--no-venv",
            home=home3,
            env=s3.env(),
        )
        assert r.returncode == 1, r.stdout[-2000:]
        said = r.stdout + r.stderr
        assert url in said and "not the locked file" in said and "X-Amz-Signature" not in said
        assert not (home3 / "models" / "sha256" / digest).exists()
