"""comfypack.serve.v2.assets (the store) and the asset routes of comfypack.serve.v2.app, on a real Starlette
app (no worker pool: the job routes answer 503 until the service's engine exists)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from blake3 import blake3

from comfypack.serve.v2.assets import AssetStore, check_hash, safe_name
from comfypack.serve.v2.common import V2Error


def store(root: Path, **kw: object) -> AssetStore:
    args: dict = {"max_bytes": 1 << 20, "max_asset_bytes": 1 << 16, "ttl": 3600.0, **kw}
    return AssetStore(root, **args)


def blobs(root: Path) -> list[Path]:
    return [p for p in (root / "blobs").rglob("*") if p.is_file()]


def test_uploads_dedupe_by_blake3_and_outputs_share_the_blob(tmp_path: Path) -> None:
    s = store(tmp_path)
    rec, new = s.add_stream(io.BytesIO(b"hello"), file_path="dir/a.txt", content_type=None)
    assert new and rec.hash == "blake3:" + blake3(b"hello").hexdigest() and rec.file_path == "a.txt"
    assert rec.content_type == "text/plain"
    again, new = s.add_stream(io.BytesIO(b"hello"), file_path="b.txt", content_type="text/plain")
    assert (again.id, new) == (rec.id, False)
    out = s.add_bytes(b"hello", file_path="o.txt", content_type="text/plain", job_id="j")
    assert out.id != rec.id and out.job_id == "j" and len(blobs(tmp_path)) == 1
    s.delete(rec.id)
    assert s.read(s.get(out.id)) == b"hello"  # the output still holds the bytes
    s.delete(out.id)
    assert blobs(tmp_path) == [] and s.by_hash(rec.hash) is None
    with pytest.raises(V2Error) as info:
        s.get(out.id)
    assert info.value.status == 404


def test_hash_mismatch_and_size_cap_leave_nothing(tmp_path: Path) -> None:
    s = store(tmp_path, max_asset_bytes=4)
    with pytest.raises(V2Error) as info:
        s.add_stream(
            io.BytesIO(b"abc"), file_path="a", content_type=None, expected_hash="blake3:" + "0" * 64
        )
    assert (info.value.status, info.value.code) == (409, "hash_mismatch")
    with pytest.raises(V2Error) as info:
        s.add_stream(io.BytesIO(b"abcdef"), file_path="a", content_type=None)
    assert (info.value.status, info.value.details) == (413, {"field": "file"})
    assert blobs(tmp_path) == [] and list((tmp_path / "records").iterdir()) == []


def test_expiry_pins_lru_and_restart(tmp_path: Path) -> None:
    s = store(tmp_path, ttl=-1.0)  # everything expires at once...
    rec, _ = s.add_stream(io.BytesIO(b"x" * 10), file_path="a", content_type=None)
    with s.pin([rec.id]):
        assert s.get(rec.id).id == rec.id  # ...unless a job uses it
        assert s.cleanup() == 0
    assert s.cleanup() == 1 and blobs(tmp_path) == []
    s = store(tmp_path, max_bytes=20)
    a, _ = s.add_stream(io.BytesIO(b"a" * 8), file_path="a", content_type=None)
    b, _ = s.add_stream(io.BytesIO(b"b" * 8), file_path="b", content_type=None)
    s.get(a.id)  # a is now the more recently used
    c, _ = s.add_stream(io.BytesIO(b"c" * 8), file_path="c", content_type=None)
    assert {r.id for r in s._records.values()} == {a.id, c.id}  # b (least recently used) went
    with s.pin([a.id, c.id]), pytest.raises(V2Error) as info:
        s.add_stream(io.BytesIO(b"d" * 8), file_path="d", content_type=None)
    assert info.value.status == 507
    assert {r.id for r in store(tmp_path, max_bytes=20)._records.values()} == {
        a.id,
        c.id,
    }  # persisted


def test_from_path_reads_only_the_import_folder(tmp_path: Path) -> None:
    imports = tmp_path / "imports"
    (imports / "sub").mkdir(parents=True)
    (imports / "sub" / "ok.png").write_bytes(b"png!")
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    os.symlink(secret, imports / "link.txt")
    os.symlink(tmp_path, imports / "up")
    s = store(tmp_path / "store", import_dir=imports)
    rec, new = s.from_path("sub/ok.png", file_path=None, content_type=None)
    assert (
        new
        and s.read(rec) == b"png!"
        and rec.file_path == "ok.png"
        and rec.content_type == "image/png"
    )
    rec2, _ = s.from_path(str(imports / "sub" / "ok.png"), file_path=None, content_type=None)
    assert rec2.id == rec.id
    for bad in (
        "../secret.txt",
        str(secret),
        "link.txt",
        "up/secret.txt",
        "sub",
        "",
        "nope",
        "a\x00b",
        3,
        "/etc/passwd",
        "/proc/self/environ",
    ):
        with pytest.raises(V2Error) as info:
            s.from_path(bad, file_path=None, content_type=None)
        assert info.value.status in (404, 422) and info.value.details == {"field": "path"}, bad
    with pytest.raises(V2Error) as info:
        store(tmp_path / "other").from_path("sub/ok.png", file_path=None, content_type=None)
    assert info.value.status == 404 and "off" in info.value.message


def test_hash_and_name_checks() -> None:
    assert check_hash(" BLAKE3:" + "A" * 64) == "blake3:" + "a" * 64
    for bad in ("blake3:abc", "sha256:" + "0" * 64, None, 5):
        with pytest.raises(V2Error):
            check_hash(bad)
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name('a"<b>\r\n.png') == "ab.png"
    assert safe_name("..") == "file" and safe_name(None) == "file"


def test_routes_without_an_engine(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from comfypack.serve.v2 import V2Settings, create_app

    app = Starlette(
        routes=[Mount("/api/v2", app=create_app(V2Settings(state_dir=tmp_path), lambda: None))]
    )
    c = TestClient(app)
    up = c.post("/api/v2/assets", files={"file": ("a.png", b"\x89PNG-ish", "image/png")})
    assert up.status_code == 201, up.text
    asset = up.json()
    assert asset["url"] == f"http://testserver/api/v2/assets/{asset['id']}/content"
    assert c.post("/api/v2/assets", files={"file": ("b.png", b"\x89PNG-ish")}).status_code == 200
    assert c.get(asset["url"], headers={"Range": "bytes=1-3"}).content == b"PNG"
    assert (
        c.post("/api/v2/assets/from-hash", json={"hash": asset["hash"]}).json()["id"] == asset["id"]
    )
    assert c.head(f"/api/v2/assets/by-hash/{asset['hash']}").status_code == 200
    r = c.post("/api/v2/assets", files={"file": ("c", b"x")}, data={"expected_hash": ""})
    assert r.status_code == 422 and r.json()["error"]["details"] == {"field": "expected_hash"}
    r = c.post("/api/v2/jobs", json={"workflow": {"1": {"class_type": "A", "inputs": {}}}})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    for bad in ('{"workflow": ', "[1]", "[" * 100_000):
        r = c.post("/api/v2/jobs", content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = c.post("/api/v2/jobs", json={"workflow": {}, "metadata": {"bad key!": "v"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "metadata_invalid"
    assert c.get("/api/v2/jobs/not-a-uuid").json()["error"]["code"] == "not_found"
    assert c.get("/api/v2/jobs?limit=0").status_code == 400
    r = c.put(f"/api/v2/assets/{asset['id']}")
    assert r.status_code == 405 and r.headers["allow"] == "GET, DELETE"
    assert c.delete(f"/api/v2/assets/{asset['id']}").status_code == 204
    assert c.get(asset["url"]).status_code == 404
