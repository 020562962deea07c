"""comfypack.lock.sources: model sources by sha256 and verified downloads.

The real clients run here — ``huggingface_hub.HfApi`` and httpx — against local HTTP servers
on 127.0.0.1 that this file starts and stops: :class:`HubStandIn` stands in for huggingface.co
(the API endpoints huggingface_hub calls, and ``/resolve/`` downloads with Range) and
:class:`CivitaiStandIn` for civitai.com (``/api/v1/model-versions/by-hash/{sha256}`` and
downloads). Each records the requests it serves, so tests can prove the network was (not) used.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from comfypack.errors import LockError, RestoreError
from comfypack.files.download import download, source_url
from comfypack.lock.civitai import CivitaiResolver
from comfypack.lock.declared import WorkflowModels, workflow_model_urls
from comfypack.lock.huggingface import HFApiResolver, HFCacheResolver
from comfypack.lock.resolve import default_resolvers, resolve_sources
from comfypack.lock.sources import ModelFile, SourcesFile, classify_url
from comfypack.lockfile import ModelSource

COMMIT = "1f2e3d4c5b6a79880123456789abcdef01234567"
OTHER_COMMIT = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# -- a tiny HTTP server framework ---------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    truncate_at: int | None = None  # send only this many body bytes, then drop the connection

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> Reply:
        return cls(
            status, json.dumps(data).encode(), {"Content-Type": "application/json", **headers}
        )


def file_reply(req: Request, data: bytes, *, honour_range: bool = True) -> Reply:
    """A file download, with ``Range: bytes=N-`` support like the Hub's CDN."""
    m = re.fullmatch(r"bytes=(\d+)-", req.headers.get("range", ""))
    if m and honour_range:
        start = int(m[1])
        if start >= len(data):
            return Reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        return Reply(
            206,
            data[start:],
            {
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                "Accept-Ranges": "bytes",
            },
        )
    return Reply(200, data, {"Accept-Ranges": "bytes"})


class StandIn:
    """A threaded HTTP server on 127.0.0.1 at a free port; ``handle(Request) -> Reply``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(
                    self.command,
                    unquote(parts.path),
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                stand_in.requests.append(req)
                reply = stand_in.handle(req)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    body = (
                        reply.body if reply.truncate_at is None else reply.body[: reply.truncate_at]
                    )
                    self.wfile.write(body)
                    if reply.truncate_at is not None:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_POST = do_HEAD = _serve

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def handle(self, req: Request) -> Reply:
        raise NotImplementedError

    def hits(self, pattern: str = "") -> list[Request]:
        return [r for r in self.requests if pattern in r.path]

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True


class HubStandIn(StandIn):
    """Stands in for huggingface.co: the endpoints huggingface_hub's HfApi calls for our lookups
    (read from huggingface_hub/hf_api.py) and ``/{repo}/resolve/{rev}/{file}`` downloads."""

    def __init__(
        self, repos: dict[str, dict[str, HubFile]], commits: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.repos = repos
        self.commits = commits or {}

    def _entry(self, path: str, f: HubFile) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "file",
            "path": path,
            "size": len(f.data),
            "oid": git_blob_id(f.data),
        }
        if f.lfs:
            entry["lfs"] = {"oid": sha(f.data), "size": len(f.data), "pointerSize": 134}
            entry["oid"] = git_blob_id(b"version https://git-lfs.github.com/spec/v1\n")
        return entry

    def handle(self, req: Request) -> Reply:
        m = re.fullmatch(
            r"/api/models/([^/]+/[^/]+)/(revision|tree|paths-info)/([^/]+)(?:/(.*))?", req.path
        )
        if m:
            repo, kind, rev, sub = m.groups()
            if repo not in self.repos:
                return Reply.json(
                    {"error": "Repository not found"}, 404, **{"X-Error-Code": "RepoNotFound"}
                )
            commit = self.commits.get(repo, COMMIT)
            if rev not in ("main", commit):
                return Reply.json(
                    {"error": "Invalid rev id"}, 404, **{"X-Error-Code": "RevisionNotFound"}
                )
            files = self.repos[repo]
            if kind == "revision":
                return Reply.json(
                    {
                        "id": repo,
                        "sha": commit,
                        "private": False,
                        "siblings": [{"rfilename": p} for p in sorted(files)],
                    }
                )
            if kind == "tree":
                entries = [
                    self._entry(p, f)
                    for p, f in sorted(files.items())
                    if not sub or p.startswith(sub.rstrip("/") + "/")
                ]
                dirs = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
                entries += [{"type": "directory", "path": d, "oid": "0" * 40} for d in dirs]
                return Reply.json(entries)
            form = parse_qs(req.body.decode())
            return Reply.json(
                [self._entry(p, files[p]) for p in form.get("paths", []) if p in files]
            )
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", req.path)
        if m and m[1] in self.repos and m[3] in self.repos[m[1]]:
            return file_reply(req, self.repos[m[1]][m[3]].data)
        return Reply.json({"error": "not found"}, 404)


class CivitaiStandIn(StandIn):
    """Stands in for civitai.com: the by-hash lookup and ``/api/download/models/{id}``."""

    def __init__(self, versions: dict[int, bytes]) -> None:
        super().__init__()
        self.versions = versions

    def handle(self, req: Request) -> Reply:
        m = re.fullmatch(r"/api/v1/model-versions/by-hash/([0-9A-Fa-f]+)", req.path)
        if m:
            for vid, data in self.versions.items():
                if sha(data) == m[1].lower():
                    url = f"{self.url}/api/download/models/{vid}?type=Model&format=SafeTensor"
                    return Reply.json(
                        {
                            "id": vid,
                            "modelId": 7,
                            "name": "v1",
                            "downloadUrl": url,
                            "files": [
                                {
                                    "name": "other.yaml",
                                    "hashes": {"SHA256": "0" * 64},
                                    "downloadUrl": url + "&x=1",
                                },
                                {
                                    "name": "model.safetensors",
                                    "primary": True,
                                    "hashes": {
                                        "SHA256": sha(data).upper(),
                                        "AutoV2": sha(data)[:10].upper(),
                                    },
                                    "downloadUrl": url,
                                },
                            ],
                        }
                    )
            return Reply.json({"error": "Model not found"}, 404)
        m = re.fullmatch(r"/api/download/models/(\d+)", req.path)
        if m and int(m[1]) in self.versions:
            return file_reply(req, self.versions[int(m[1])])
        return Reply.json({"error": "not found"}, 404)


class FileStandIn(StandIn):
    """A plain download server whose behaviour a test scripts per request."""

    def __init__(self, data: bytes, script: Callable[[Request, int], Reply] | None = None) -> None:
        super().__init__()
        self.data = data
        self.script = script

    def handle(self, req: Request) -> Reply:
        n = len(self.hits(req.path))
        if self.script is not None:
            return self.script(req, n)
        return file_reply(req, self.data)


def closed_port_url() -> str:
    """A URL nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def model_file(
    tmp_path: Path, data: bytes, path: str = "model.safetensors", folder: str = "checkpoints"
) -> ModelFile:
    local = tmp_path / "comfyui" / "models" / folder / path
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
    return ModelFile(folder=folder, path=path, size=len(data), sha256=sha(data), local_path=local)


@pytest.fixture
def hf_cache(tmp_path) -> Callable[..., Path]:
    """Build a Hugging Face hub cache: ``add(repo, file, data, revision, lfs)``."""
    root = tmp_path / "hf" / "hub"

    def add(
        repo: str,
        file: str,
        data: bytes,
        *,
        revision: str = COMMIT,
        lfs: bool = True,
        main: bool = True,
    ) -> Path:
        repo_dir = root / ("models--" + repo.replace("/", "--"))
        blob_name = sha(data) if lfs else git_blob_id(data)
        blob = repo_dir / "blobs" / blob_name
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        snap = repo_dir / "snapshots" / revision / file
        snap.parent.mkdir(parents=True, exist_ok=True)
        snap.symlink_to(os.path.relpath(blob, snap.parent))
        if main:
            (repo_dir / "refs").mkdir(exist_ok=True)
            (repo_dir / "refs" / "main").write_text(revision)
        return snap

    add.root = root  # type: ignore[attr-defined]
    return add


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


# -- 1. sources file ----------------------------------------------------------------------------


def test_sources_file_by_sha256_and_by_name(tmp_path):
    a, b, c = b"model a", b"model b", b"model c"
    f = tmp_path / "sources.json"
    f.write_text(
        json.dumps(
            {
                sha(a).upper(): "https://mirror.example.org/a.safetensors",
                "b.safetensors": {
                    "url": "https://huggingface.co/org/repo/resolve/"
                    + COMMIT
                    + "/sub/b.safetensors"
                },
                "loras/c.safetensors": [
                    "https://civitai.com/api/download/models/77",
                    "https://x.example/c",
                ],
                "huggingface_repos": ["org/repo", "org/repo"],
            }
        )
    )
    sf = SourcesFile(f)
    assert sf.repos == ["org/repo"]
    assert sf.resolve(model_file(tmp_path, a, "renamed.safetensors")) == [
        ModelSource(type="url", url="https://mirror.example.org/a.safetensors")
    ]
    (hf,) = sf.resolve(model_file(tmp_path, b, "nested/b.safetensors"))  # by base name
    assert (hf.type, hf.repo, hf.revision, hf.file) == (
        "huggingface",
        "org/repo",
        COMMIT,
        "sub/b.safetensors",
    )
    civ, plain = sf.resolve(model_file(tmp_path, c, "c.safetensors", folder="loras"))  # folder/path
    assert (civ.type, civ.model_version_id) == ("civitai", 77)
    assert plain.type == "url"
    assert sf.resolve(model_file(tmp_path, b"unknown", "u.bin")) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"x.bin": "ftp://host/x"}', "not an http"),
        ('{"x.bin": 3}', "expected a URL"),
        ('{"huggingface_repos": "org/name"}', "huggingface_repos"),
    ],
)
def test_bad_sources_file_is_a_clear_lock_error(tmp_path, content, message):
    f = tmp_path / "sources.json"
    f.write_text(content)
    with pytest.raises(LockError, match=message) as info:
        SourcesFile(f)
    assert info.value.exit_code == 2


def test_missing_sources_file(tmp_path):
    with pytest.raises(LockError, match="cannot read the sources file"):
        SourcesFile(tmp_path / "nope.json")


# -- 2. Hugging Face cache ----------------------------------------------------------------------


def test_hf_cache_model_symlinked_into_the_cache(tmp_path, hf_cache):
    data = b"weights from the hub" * 10
    snap = hf_cache("org/upscalers", "x4/model.safetensors", data)
    local = tmp_path / "comfyui" / "models" / "upscale_models" / "x4.safetensors"
    local.parent.mkdir(parents=True)
    local.symlink_to(snap)  # ComfyUI's models/ linked to the HF cache
    m = ModelFile("upscale_models", "x4.safetensors", len(data), sha(data), local)
    (src,) = HFCacheResolver(hf_cache.root, endpoint="https://hub.example").resolve(m)
    assert (src.type, src.repo, src.revision, src.file) == (
        "huggingface",
        "org/upscalers",
        COMMIT,
        "x4/model.safetensors",
    )
    # the canonical URL, whatever endpoint (mirror) was configured: locks never record a mirror
    assert src.url == f"https://huggingface.co/org/upscalers/resolve/{COMMIT}/x4/model.safetensors"
    assert (
        source_url(src, hf_endpoint="https://hub.example")
        == f"https://hub.example/org/upscalers/resolve/{COMMIT}/x4/model.safetensors"
    )


def test_hf_cache_model_copied_out_of_the_cache(tmp_path, hf_cache):
    data = b"copied weights" * 10
    hf_cache("org/old", "m.safetensors", data, revision=OTHER_COMMIT, main=False)
    hf_cache("org/repo", "m.safetensors", data)  # refs/main points here: preferred
    m = model_file(tmp_path, data, "copy.safetensors")
    assert not m.local_path.is_symlink()
    (src,) = HFCacheResolver(hf_cache.root).resolve(m)
    assert (src.repo, src.revision, src.file) == ("org/repo", COMMIT, "m.safetensors")
    assert src.url == f"https://huggingface.co/org/repo/resolve/{COMMIT}/m.safetensors"


def test_hf_cache_prefers_main_snapshot_and_own_name(tmp_path, hf_cache):
    data = b"same blob, two names, two revisions"
    hf_cache("org/repo", "alias.safetensors", data, revision=OTHER_COMMIT, main=False)
    hf_cache("org/repo", "zz/model.safetensors", data, revision=COMMIT)
    hf_cache("org/repo", "aa/other-name.safetensors", data, revision=COMMIT)
    m = model_file(tmp_path, data, "model.safetensors")
    (src,) = HFCacheResolver(hf_cache.root).resolve(m)
    assert (src.revision, src.file) == (COMMIT, "zz/model.safetensors")


def test_hf_cache_unrelated_file_and_damaged_blob(tmp_path, hf_cache, caplog):
    hf_cache("org/repo", "m.safetensors", b"cached")
    resolver = HFCacheResolver(hf_cache.root)
    assert resolver.resolve(model_file(tmp_path, b"not in the cache")) == []
    assert resolver.repos() == ["org/repo"]
    # a blob whose bytes no longer match its name is not a source
    blob = next((hf_cache.root / "models--org--repo" / "blobs").iterdir())
    blob.write_bytes(b"tampered")
    local = tmp_path / "linked.safetensors"
    local.symlink_to(blob)
    m = ModelFile("checkpoints", "linked.safetensors", 8, sha(b"tampered"), local)
    with caplog.at_level(logging.WARNING, logger="comfypack.lock.huggingface"):
        assert resolver.resolve(m) == []
    assert "damaged" in caplog.text


def test_hf_cache_missing_dir_is_no_answer(tmp_path):
    resolver = HFCacheResolver(tmp_path / "no-cache")
    assert resolver.repos() == []
    assert resolver.resolve(model_file(tmp_path, b"x")) == []


# -- 3. Hugging Face API ------------------------------------------------------------------------


def test_hf_api_accepts_only_a_matching_lfs_sha256(tmp_path):
    good = b"the real upscaler weights" * 100
    impostor = b"same name, other bytes!!!" * 100
    assert len(good) == len(impostor)
    hub = HubStandIn(
        {
            "org/impostor": {"x4.safetensors": HubFile(impostor)},
            "org/real": {"x4.safetensors": HubFile(good)},
        }
    )
    with hub:
        r = HFApiResolver(endpoint=hub.url, repos=["org/missing", "org/impostor", "org/real"])
        (src,) = r.resolve(model_file(tmp_path, good, "x4.safetensors"))
    assert (src.type, src.repo, src.revision, src.file) == (
        "huggingface",
        "org/real",
        COMMIT,
        "x4.safetensors",
    )
    assert (
        src.url == f"https://huggingface.co/org/real/resolve/{COMMIT}/x4.safetensors"
    )  # not the endpoint's
    assert hub.hits("/api/models/org/missing/revision/main")  # asked, 404: skipped
    # the impostor was looked at (same name) and rejected by its LFS sha256
    assert hub.hits("/api/models/org/impostor/paths-info/" + COMMIT)


def test_hf_api_finds_a_renamed_file_by_content(tmp_path):
    data = b"renamed on disk" * 50
    hub = HubStandIn(
        {
            "org/repo": {
                "README.md": HubFile(b"# hi", lfs=False),
                "split_files/unet/flux.safetensors": HubFile(data),
            }
        }
    )
    with hub:
        r = HFApiResolver(endpoint=hub.url, repos=["org/repo"])
        (src,) = r.resolve(model_file(tmp_path, data, "my-flux.safetensors"))
        assert src.file == "split_files/unet/flux.safetensors"
        assert len(hub.hits("/tree/")) == 1
        # a second model: the repo listing is reused, the revision too
        r.resolve(model_file(tmp_path, b"another", "another.bin"))
        assert len(hub.hits("/tree/")) == 1
        assert len(hub.hits("/revision/")) == 1


def test_hf_api_small_non_lfs_file_is_checked_by_git_blob_id(tmp_path):
    cfg = b'{"scale": 4}'
    hub = HubStandIn(
        {
            "org/repo": {
                "config.json": HubFile(cfg, lfs=False),
                "other.json": HubFile(b'{"scale": 2}', lfs=False),
            }
        }
    )
    with hub:
        r = HFApiResolver(endpoint=hub.url, repos=["org/repo"])
        (src,) = r.resolve(model_file(tmp_path, cfg, "config.json"))
        assert src.file == "config.json"
        assert r.resolve(model_file(tmp_path, b'{"scale": 3}', "other.json")) == []


def test_hf_api_without_repos_asks_nothing(tmp_path):
    hub = HubStandIn({"org/repo": {"m.bin": HubFile(b"m")}})
    with hub:
        assert HFApiResolver(endpoint=hub.url).resolve(model_file(tmp_path, b"m", "m.bin")) == []
        assert hub.requests == []


def test_hf_api_invalid_repo_id_is_skipped_not_a_crash(tmp_path, caplog):
    hub = HubStandIn({"org/repo": {"m.bin": HubFile(b"m")}})
    with hub, caplog.at_level(logging.WARNING, logger="comfypack.lock.huggingface"):
        r = HFApiResolver(endpoint=hub.url, repos=["not a//repo id", "org/repo"])
        (src,) = r.resolve(model_file(tmp_path, b"m", "m.bin"))
    assert src.repo == "org/repo"
    assert "not a//repo id" in caplog.text


def test_hf_api_honours_hf_endpoint_env(tmp_path, monkeypatch):
    """Without endpoint=, HfApi's own default: huggingface_hub reads HF_ENDPOINT into constants."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://hub.invalid")
    assert HFApiResolver(repos=["a/b"]).endpoint == "http://hub.invalid"


# -- 4. Civitai ---------------------------------------------------------------------------------


def test_civitai_by_hash(tmp_path):
    data = b"a civitai checkpoint" * 20
    civ = CivitaiStandIn({4242: data})
    with civ:
        r = CivitaiResolver(civ.url)
        (src,) = r.resolve(model_file(tmp_path, data))
        assert (src.type, src.model_version_id) == ("civitai", 4242)
        assert (
            src.url == "https://civitai.com/api/download/models/4242?type=Model&format=SafeTensor"
        )
        assert source_url(src, civitai_url=civ.url).startswith(
            f"{civ.url}/api/download/models/4242?"
        )
        assert civ.hits()[0].path == f"/api/v1/model-versions/by-hash/{sha(data)}"
        assert r.resolve(model_file(tmp_path, b"unknown", "u.bin")) == []  # 404: no answer


# -- resolving: order, cache, failures ------------------------------------------------------------


def test_resolver_order_first_answer_wins(tmp_path):
    data = b"known everywhere" * 10
    m = model_file(tmp_path, data)
    f = tmp_path / "sources.json"
    f.write_text(json.dumps({sha(data): "https://mirror.example.org/m"}))
    hub = HubStandIn({"org/repo": {"model.safetensors": HubFile(data)}})
    civ = CivitaiStandIn({1: data})
    with hub, civ:
        resolvers = [
            SourcesFile(f),
            HFApiResolver(endpoint=hub.url, repos=["org/repo"]),
            CivitaiResolver(civ.url),
        ]
        got = resolve_sources([m], resolvers, cache_path=tmp_path / "lookups.json")
        assert got == {m.sha256: [ModelSource(type="url", url="https://mirror.example.org/m")]}
        assert hub.requests == [] and civ.requests == []

        got = resolve_sources([m], resolvers[1:], cache_path=tmp_path / "lookups.json")
        assert got[m.sha256][0].type == "huggingface"
        assert civ.requests == []

        got = resolve_sources(
            [m], [resolvers[2], resolvers[1]], cache_path=tmp_path / "lookups.json"
        )
        assert got[m.sha256][0].type == "civitai"


def test_lookup_cache_hit_avoids_the_network(tmp_path):
    found, missing = b"on civitai" * 10, b"nowhere" * 10
    models = [
        model_file(tmp_path, found, "a.safetensors"),
        model_file(tmp_path, missing, "b.safetensors"),
        model_file(tmp_path, found, "dup.safetensors"),
    ]
    civ = CivitaiStandIn({9: found})
    cache = tmp_path / "lookups.json"
    with civ:
        first = resolve_sources(models, [CivitaiResolver(civ.url)], cache_path=cache)
        assert len(civ.requests) == 2  # the duplicate sha256 is looked up once
        second = resolve_sources(models, [CivitaiResolver(civ.url)], cache_path=cache)
        assert second == first
        assert len(civ.requests) == 2  # both answers (found and not found) came from the cache
    assert first[sha(found)][0].model_version_id == 9
    assert first[sha(missing)] == []
    assert set(json.loads(cache.read_text())["entries"]) == {f"civitai {civ.url}"}


def test_negative_answers_expire(tmp_path, monkeypatch):
    from comfypack.lock import resolve as sources

    m = model_file(tmp_path, b"later uploaded")
    civ = CivitaiStandIn({})
    cache = tmp_path / "lookups.json"
    with civ:
        assert resolve_sources([m], [CivitaiResolver(civ.url)], cache_path=cache)[m.sha256] == []
        civ.versions[5] = b"later uploaded"
        assert resolve_sources([m], [CivitaiResolver(civ.url)], cache_path=cache)[m.sha256] == []
        now = time.time()
        monkeypatch.setattr(sources.time, "time", lambda: now + sources.NEGATIVE_TTL_S + 1)
        assert (
            resolve_sources([m], [CivitaiResolver(civ.url)], cache_path=cache)[m.sha256][
                0
            ].model_version_id
            == 5
        )


def test_local_resolvers_are_not_cached(tmp_path):
    data = b"x" * 10
    m = model_file(tmp_path, data)
    f = tmp_path / "sources.json"
    f.write_text(json.dumps({sha(data): "https://a.example/x"}))
    cache = tmp_path / "lookups.json"
    resolve_sources([m], [SourcesFile(f)], cache_path=cache)
    f.write_text(json.dumps({sha(data): "https://b.example/x"}))  # the user edits the file
    assert (
        resolve_sources([m], [SourcesFile(f)], cache_path=cache)[m.sha256][0].url
        == "https://b.example/x"
    )


def test_network_failure_means_no_sources_and_a_warning(tmp_path, caplog):
    dead = closed_port_url()
    models = [model_file(tmp_path, b"one", "1.bin"), model_file(tmp_path, b"two", "2.bin")]
    resolvers = [HFApiResolver(endpoint=dead, repos=["org/repo"]), CivitaiResolver(dead)]
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="comfypack.lock.resolve"):
        got = resolve_sources(models, resolvers, cache_path=tmp_path / "lookups.json")
    assert time.monotonic() - start < 10
    assert got == {models[0].sha256: [], models[1].sha256: []}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per unreachable service, not one per model
    assert (
        "huggingface cannot be reached" in caplog.text
        and "civitai cannot be reached" in caplog.text
    )
    # failures are not cached as "no source"
    assert not (tmp_path / "lookups.json").exists()


def test_server_errors_count_as_unreachable(tmp_path, caplog):
    class Broken(CivitaiStandIn):
        def handle(self, req: Request) -> Reply:
            return Reply.json({"error": "overloaded"}, 503)

    with Broken({}) as civ, caplog.at_level(logging.WARNING, logger="comfypack.lock.resolve"):
        got = resolve_sources(
            [model_file(tmp_path, b"m")],
            [CivitaiResolver(civ.url)],
            cache_path=tmp_path / "lookups.json",
        )
    assert list(got.values()) == [[]]
    assert "HTTP 503" in caplog.text


def test_default_resolvers(tmp_path, hf_cache, monkeypatch):
    hf_cache("cache/repo", "m.bin", b"m")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hf_cache.root))
    f = tmp_path / "sources.json"
    f.write_text(json.dumps({"huggingface_repos": ["user/repo"]}))
    rs = default_resolvers(f, hf_endpoint="http://hub.local", civitai_url="http://civ.local")
    assert [r.name for r in rs] == ["sources-file", "huggingface-cache", "huggingface", "civitai"]
    assert rs[2].repos == ["user/repo", "cache/repo"] and rs[2].endpoint == "http://hub.local"
    assert rs[3].base_url == "http://civ.local"
    assert [r.name for r in default_resolvers(None, offline=True)] == ["huggingface-cache"]


def test_end_to_end_with_the_default_order(tmp_path, hf_cache):
    """A model in the HF cache, one on the hub (repo seen in the cache), one on Civitai."""
    cached, hosted, civ_data = b"cached" * 30, b"hosted" * 30, b"civitai" * 30
    snap = hf_cache("org/repo", "cached.safetensors", cached)
    local = tmp_path / "comfyui" / "models" / "checkpoints" / "cached.safetensors"
    local.parent.mkdir(parents=True)
    local.symlink_to(snap)
    models = [
        ModelFile("checkpoints", "cached.safetensors", len(cached), sha(cached), local),
        model_file(tmp_path, hosted, "hosted.safetensors"),
        model_file(tmp_path, civ_data, "civ.safetensors"),
    ]
    hub = HubStandIn(
        {"org/repo": {"cached.safetensors": HubFile(cached), "hosted.safetensors": HubFile(hosted)}}
    )
    civ = CivitaiStandIn({3: civ_data})
    with hub, civ:
        cache = HFCacheResolver(hf_cache.root, endpoint=hub.url)
        resolvers = [
            cache,
            HFApiResolver(endpoint=hub.url, repos=cache.repos()),
            CivitaiResolver(civ.url),
        ]
        got = resolve_sources(models, resolvers, cache_path=tmp_path / "lookups.json")
    assert [got[m.sha256][0].type for m in models] == ["huggingface", "huggingface", "civitai"]
    assert got[sha(hosted)][0].file == "hosted.safetensors"
    assert not civ.hits(sha(cached)) and not civ.hits(sha(hosted))


# -- download -----------------------------------------------------------------------------------


def test_download_verifies_and_renames_into_place(tmp_path):
    data = os.urandom(3 << 20)
    with FileStandIn(data) as srv:
        dest = tmp_path / "cache" / sha(data)
        got = download(
            ModelSource(type="url", url=f"{srv.url}/m.bin"),
            dest,
            sha256=sha(data),
            size=len(data),
            progress=False,
        )
    assert got == dest and dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == [sha(data)]


def test_download_resumes_a_partial_file_with_range(tmp_path):
    data = os.urandom(2 << 20)
    dest = tmp_path / "m.safetensors"
    (tmp_path / "m.safetensors.partial").write_bytes(data[:700_000])
    with FileStandIn(data) as srv:
        download(
            ModelSource(type="url", url=f"{srv.url}/m"),
            dest,
            sha256=sha(data),
            size=len(data),
            progress=True,
        )
        (req,) = srv.requests
    assert req.headers["range"] == "bytes=700000-"
    assert dest.read_bytes() == data
    assert not (tmp_path / "m.safetensors.partial").exists()


def test_download_resumes_after_the_connection_drops(tmp_path):
    data = os.urandom(1 << 20)

    def flaky(req: Request, n: int) -> Reply:
        reply = file_reply(req, data)
        if n == 1:
            reply.truncate_at = 300_000
        return reply

    with FileStandIn(data, flaky) as srv:
        dest = tmp_path / "m.bin"
        download(
            ModelSource(type="url", url=f"{srv.url}/m"),
            dest,
            sha256=sha(data),
            size=len(data),
            progress=False,
        )
        assert len(srv.requests) == 2
        assert "range" not in srv.requests[0].headers
        assert re.fullmatch(r"bytes=\d+-", srv.requests[1].headers["range"])
    assert dest.read_bytes() == data


def test_download_restarts_when_the_server_ignores_range(tmp_path):
    data = os.urandom(100_000)
    (tmp_path / "m.bin.partial").write_bytes(data[:5000])
    with FileStandIn(data, lambda req, n: file_reply(req, data, honour_range=False)) as srv:
        download(
            ModelSource(type="url", url=f"{srv.url}/m"),
            tmp_path / "m.bin",
            sha256=sha(data),
            size=len(data),
            progress=False,
        )
    assert (tmp_path / "m.bin").read_bytes() == data


def test_download_stale_partial_is_redone_from_scratch(tmp_path):
    """A partial file from an older attempt that holds wrong bytes: the resumed result fails
    verification, so the file is fetched again from the start."""
    data = os.urandom(100_000)
    (tmp_path / "m.bin.partial").write_bytes(b"\0" * 5000)
    with FileStandIn(data) as srv:
        download(
            ModelSource(type="url", url=f"{srv.url}/m"),
            tmp_path / "m.bin",
            sha256=sha(data),
            size=len(data),
            progress=False,
        )
        assert [r.headers.get("range") for r in srv.requests] == ["bytes=5000-", None]
    assert (tmp_path / "m.bin").read_bytes() == data


@pytest.mark.parametrize("served", ["other bytes", "too long", "too short"])
def test_download_refuses_a_mismatch_and_leaves_nothing(tmp_path, served):
    data = os.urandom(50_000)
    body = {
        "other bytes": os.urandom(50_000),
        "too long": data + b"extra",
        "too short": data[:-10],
    }[served]
    dest = tmp_path / "cache" / sha(data)
    with FileStandIn(body) as srv, pytest.raises(RestoreError) as info:
        download(
            ModelSource(type="url", url=f"{srv.url}/m"),
            dest,
            sha256=sha(data),
            size=len(data),
            progress=False,
            retries=2,
        )
    assert srv.url in info.value.message
    assert not dest.exists()
    if served != "too short":  # a short body is resumable: what arrived is kept for next time
        assert list(dest.parent.iterdir()) == []
    else:
        assert "run again to resume" in info.value.message


def test_download_http_errors(tmp_path):
    with (
        FileStandIn(b"", lambda req, n: Reply(401, b"")) as srv,
        pytest.raises(RestoreError, match="HTTP 401.*token"),
    ):
        download(
            ModelSource(type="url", url=f"{srv.url}/m"),
            tmp_path / "m",
            sha256="0" * 64,
            size=1,
            progress=False,
        )
    with pytest.raises(RestoreError, match="interrupted"):
        download(
            ModelSource(type="url", url=f"{closed_port_url()}/m"),
            tmp_path / "m",
            sha256="0" * 64,
            size=1,
            progress=False,
            retries=1,
        )
    assert list(tmp_path.iterdir()) == []


def test_download_never_overwrites_an_existing_file(tmp_path):
    data = b"good"
    dest = tmp_path / "m.bin"
    dest.write_bytes(data)
    # already there and right: no network at all
    assert (
        download(
            ModelSource(type="url", url=f"{closed_port_url()}/m"),
            dest,
            sha256=sha(data),
            size=len(data),
            progress=False,
        )
        == dest
    )
    dest.write_bytes(b"evil")
    with pytest.raises(RestoreError, match="already exists"):
        download(
            ModelSource(type="url", url=f"{closed_port_url()}/m"),
            dest,
            sha256=sha(data),
            size=len(data),
            progress=False,
        )
    assert dest.read_bytes() == b"evil"


def test_download_from_the_hub_and_civitai_via_endpoints(tmp_path):
    """Sources recorded against huggingface.co / civitai.com, fetched from stand-ins."""
    hub_data, civ_data = os.urandom(20_000), os.urandom(30_000)
    hub = HubStandIn({"org/repo": {"sub/m.safetensors": HubFile(hub_data)}})
    civ = CivitaiStandIn({11: civ_data})
    hf_src = ModelSource(
        type="huggingface",
        repo="org/repo",
        revision=COMMIT,
        file="sub/m.safetensors",
        url=f"https://huggingface.co/org/repo/resolve/{COMMIT}/sub/m.safetensors",
    )
    civ_src = ModelSource(
        type="civitai",
        model_version_id=11,
        url="https://civitai.com/api/download/models/11?type=Model",
    )
    with hub, civ:
        assert (
            source_url(hf_src, hf_endpoint=hub.url)
            == f"{hub.url}/org/repo/resolve/{COMMIT}/sub/m.safetensors"
        )
        assert (
            source_url(civ_src, civitai_url=civ.url)
            == f"{civ.url}/api/download/models/11?type=Model"
        )
        assert source_url(hf_src) == hf_src.url
        download(
            hf_src,
            tmp_path / "a",
            sha256=sha(hub_data),
            size=len(hub_data),
            progress=False,
            hf_endpoint=hub.url,
            token="hf_secret",
        )
        download(
            civ_src,
            tmp_path / "b",
            sha256=sha(civ_data),
            size=len(civ_data),
            progress=False,
            civitai_url=civ.url,
        )
        assert hub.hits("/resolve/")[0].headers["authorization"] == "Bearer hf_secret"
    assert (tmp_path / "a").read_bytes() == hub_data and (tmp_path / "b").read_bytes() == civ_data


def test_parallel_downloads_with_progress(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    blobs = [os.urandom(200_000 + i) for i in range(4)]
    with FileStandIn(b"", lambda req, n: file_reply(req, blobs[int(req.path.strip("/"))])) as srv:

        def one(i: int) -> Path:
            return download(
                ModelSource(type="url", url=f"{srv.url}/{i}"),
                tmp_path / f"m{i}",
                sha256=sha(blobs[i]),
                size=len(blobs[i]),
                progress=True,
            )

        with ThreadPoolExecutor(4) as pool:
            paths = list(pool.map(one, range(4)))
    assert [p.read_bytes() for p in paths] == blobs


# -- the workflow's own model URLs (properties.models[]) ---------------------------------------


UI_GRAPH = {
    "nodes": [
        {
            "id": 4,
            "type": "CheckpointLoaderSimple",
            "properties": {
                "models": [
                    {
                        "name": "x4.safetensors",
                        "directory": "upscale_models",
                        "url": "https://huggingface.co/org/real/resolve/main/x4.safetensors?download=true",
                    }
                ]
            },
        },
        {"id": 5, "type": "Note", "properties": {}},
    ],
    "links": [],
    "models": [
        {"name": "other.bin", "url": "https://files.example/other.bin", "directory": "loras"}
    ],
    "definitions": {
        "subgraphs": [
            {
                "nodes": [
                    {
                        "properties": {
                            "models": [
                                {
                                    "name": "deep.safetensors",
                                    "url": "https://files.example/deep.safetensors",
                                    "directory": "vae",
                                }
                            ]
                        }
                    }
                ]
            }
        ]
    },
}


def test_workflow_model_urls_reads_nodes_subgraphs_and_the_top_level():
    entries = workflow_model_urls(UI_GRAPH)
    assert {(e["directory"], e["name"]) for e in entries} == {
        ("upscale_models", "x4.safetensors"),
        ("loras", "other.bin"),
        ("vae", "deep.safetensors"),
    }
    assert workflow_model_urls({"1": {"class_type": "X", "inputs": {}}}) == []  # API format: none


def test_workflow_urls_are_pinned_through_the_hub_and_recorded_canonically(tmp_path):
    good = b"the real upscaler" * 30
    hub = HubStandIn({"org/real": {"x4.safetensors": HubFile(good)}})
    with hub:
        # the workflow names the Hub; the lookups go to the endpoint (a mirror / HF_ENDPOINT)
        resolvers = default_resolvers(
            None,
            hf_endpoint=hub.url,
            civitai_url=closed_port_url(),
            workflow_models=workflow_model_urls(UI_GRAPH),
        )
        assert [r.name for r in resolvers][:2] == ["workflow", "huggingface-cache"]
        m = model_file(tmp_path, good, "x4.safetensors")
        m = ModelFile("upscale_models", "x4.safetensors", m.size, m.sha256, m.local_path)
        (src,) = resolvers[0].resolve(m)
        # a file of another folder or another content is not matched
        other = ModelFile("checkpoints", "x4.safetensors", m.size, m.sha256, m.local_path)
        assert resolvers[0].resolve(other) == []
        impostor = model_file(tmp_path, b"not the upscaler" * 30, "x4.safetensors")
        assert (
            resolvers[0].resolve(
                ModelFile(
                    "upscale_models",
                    "x4.safetensors",
                    impostor.size,
                    impostor.sha256,
                    impostor.local_path,
                )
            )
            == []
        )
    assert (src.type, src.repo, src.revision, src.file) == (
        "huggingface",
        "org/real",
        COMMIT,
        "x4.safetensors",
    )
    assert src.url == f"https://huggingface.co/org/real/resolve/{COMMIT}/x4.safetensors"


def test_workflow_urls_offline_are_kept_as_given_and_mirror_urls_made_canonical(tmp_path):
    wm = WorkflowModels(
        [{"name": "m.bin", "directory": "", "url": "http://127.0.0.1:9/org/r/resolve/main/m.bin"}],
        hf_endpoint="http://127.0.0.1:9",
    )
    (src,) = wm.resolve(model_file(tmp_path, b"m", "m.bin"))
    assert (src.type, src.url) == ("huggingface", "https://huggingface.co/org/r/resolve/main/m.bin")
    assert classify_url("https://files.example/a.bin").type == "url"
    assert classify_url("https://civitai.com/api/download/models/7").model_version_id == 7
