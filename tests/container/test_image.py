"""The Kubernetes path for real (issue 16): a pack → `comfypack containerize` → an OCI image that
serves, run the way a cluster runs it.

One pack: the text_tools example plus an upscale branch whose model (a tiny real upscaler made
here) is not in the image: a local HTTP server on 127.0.0.1 stands in for the model's source and
counts downloads. The image is built with buildah on the base image `make base-image` makes, and
run (see _runtime.py) on the host's network, read-only root, as its non-root user, a temp dir as
the model-cache volume. First start: /readyz is 503 and says it is restoring while the model
downloads, then 200; the example's request.json gets the example's answer and the upscaled
image. Second start, cache kept: no second download. Cold starts (start → /readyz → first
answer, with and without the model in the cache), build time, image size and disk use are
printed. The Kubernetes manifests are checked against the built image's own config.

Slow (minutes, ~30 GB of free disk at the peak of the build): `make test-container`; plain `make test` skips it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES, ROOT, http_server, require_comfyui

from ._runtime import Container, buildah, image_config

pytestmark = pytest.mark.container

if os.environ.get("COMFYPACK_CONTAINER_TESTS") != "1":
    pytest.skip(
        "builds and runs an OCI image (minutes, ~30 GB of free disk): run `make test-container`",
        allow_module_level=True,
    )
if shutil.which("buildah") is None or shutil.which("unshare") is None:
    pytest.skip(
        "buildah is not installed: `make base-image` installs it (apt-get, as root)",
        allow_module_level=True,
    )
if os.geteuid() != 0:
    pytest.skip("running the image (mount namespaces, chroot) needs root", allow_module_level=True)

TEXT = EXAMPLES / "text_tools"
MODEL = "tiny_compact_x2.safetensors"
UPSCALE = {
    "21": {
        "class_type": "ComfyPackInputImage",
        "inputs": {"name": "image", "description": "A picture to upscale.", "image": "in.png"},
    },
    "22": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": MODEL}},
    "23": {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["22", 0], "image": ["21", 0]},
    },
    "24": {
        "class_type": "ComfyPackOutputImage",
        "inputs": {
            "images": ["23", 0],
            "name": "upscaled",
            "format": "png",
            "quality": 95,
            "filename_prefix": "upscaled",
        },
    },
}
NEEDED_FREE = 30 * 10**9
MODEL_DELAY = 3.0  # seconds the model source takes to answer: /readyz is watched meanwhile


class _ModelSource(http.server.SimpleHTTPRequestHandler):
    """Serves the model file (slowly) and counts each GET of it."""

    downloads: list[float] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.endswith(".safetensors"):
            type(self).downloads.append(time.monotonic())
            time.sleep(MODEL_DELAY)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


def _comfypack(
    *args: str, env: dict[str, str], timeout: float = 3600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comfypack.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
        cwd=ROOT,
    )


def _tiny_upscale_model(path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(1234)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def _make_pack(tmp: Path, source_url: str, served: Path, env: dict[str, str]) -> Path:
    """The author's side: a ComfyUI copy (hard links) with the model and the input picture, a
    sources file naming the stand-in server, then `comfypack pack`."""
    import numpy as np
    from PIL import Image

    comfy = tmp / "author" / "comfyui"

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(
        require_comfyui(),
        comfy,
        copy_function=link_or_copy,
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "output", "temp", "user"),
    )
    model = comfy / "models" / "upscale_models" / MODEL
    model.parent.mkdir(parents=True, exist_ok=True)
    _tiny_upscale_model(model)
    rng = np.random.default_rng(7)
    (comfy / "input").mkdir(exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
        comfy / "input" / "in.png"
    )
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    shutil.copyfile(model, served / f"{digest}.safetensors")
    sources = tmp / "sources.json"
    sources.write_text(json.dumps({digest: f"{source_url}/{digest}.safetensors"}))
    workflow = {**json.loads((TEXT / "workflow_api.json").read_text()), **UPSCALE}
    wf = tmp / "text_upscale" / "workflow_api.json"
    wf.parent.mkdir()
    wf.write_text(json.dumps(workflow, indent=2))
    pack = tmp / "text_upscale.cpack.zip"
    r = _comfypack(
        "pack",
        str(wf),
        "--comfyui",
        str(comfy),
        "--sources",
        str(sources),
        "--offline",
        "-o",
        str(pack),
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return pack


def _disk_free() -> int:
    return shutil.disk_usage(
        "/var/lib/containers" if Path("/var/lib/containers").exists() else "/"
    ).free


@contextlib.contextmanager
def _lowest_free_disk() -> Iterator[list[int]]:
    """Samples the free disk every 0.5 s while the block runs; yields [lowest seen]."""
    import threading

    lowest = [_disk_free()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            lowest[0] = min(lowest[0], _disk_free())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lowest
    finally:
        stop.set()
        thread.join(5)


@contextlib.contextmanager
def _image(pack: Path, tag: str, env: dict[str, str]) -> Iterator[tuple[dict[str, object], float]]:
    """`comfypack containerize PACK -t TAG` (the base image made first); removed afterwards."""
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "base_image.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    started = time.monotonic()
    r = _comfypack("containerize", str(pack), "-t", tag, "--json", env=env)
    seconds = time.monotonic() - started
    try:
        assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
        yield json.loads(r.stdout), seconds
    finally:
        with contextlib.suppress(RuntimeError):
            buildah("rmi", "-f", tag)


def _wait_ready(
    url: str, container: Container, seconds: float
) -> list[tuple[float, int, dict[str, object]]]:
    """Poll /readyz until 200; every answer, with its time."""
    seen: list[tuple[float, int, dict[str, object]]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert container.proc is not None and container.proc.poll() is None, "the container exited"
        with contextlib.suppress(httpx.HTTPError, ValueError):
            r = httpx.get(f"{url}/readyz", timeout=3)
            seen.append((time.monotonic(), r.status_code, r.json()))
            if r.status_code == 200:
                return seen
        time.sleep(0.2)
    raise AssertionError(f"not ready in {seconds} s; last answers {seen[-3:]}")


def _check_answer(url: str, picture: bytes) -> float:
    """POST the example's request.json with a picture; the example's answer and the picture
    upscaled by the model."""
    from PIL import Image

    body = {
        **json.loads((TEXT / "request.json").read_text()),
        "image": "data:image/png;base64," + base64.b64encode(picture).decode(),
    }
    r = httpx.post(f"{url}/generate", json=body, timeout=600)
    answered = time.monotonic()
    assert r.status_code == 200, r.text[-2000:]
    out = r.json()
    assert (out["text"], out["length"], out["contains"]) == ("Hello Comfypack", 15, True), out
    up = out["upscaled"]
    data = base64.b64decode(up.partition(",")[2] if isinstance(up, str) else up["data"])
    assert Image.open(io.BytesIO(data)).size == (64, 48)  # 32×24 through the ×2 model
    return answered


def _free_port() -> int:
    from comfypack.comfyui.process import free_port

    return free_port()


@pytest.mark.timeout(3600)  # the build alone takes minutes (torch copied from the uv cache, vfs)
def test_the_image_builds_serves_and_keeps_its_model_cache(tmp_path: Path) -> None:
    from comfypack.ship.build import plan_build
    from comfypack.ship.deploy import KubernetesOptions, kubernetes_manifests

    if _disk_free() < NEEDED_FREE:  # vfs: the build's root, the layer's archive and the layer
        pytest.skip(
            f"the image build needs ~{NEEDED_FREE / 1e9:.0f} GB of free disk under "
            f"/var/lib/containers; {_disk_free() / 1e9:.1f} GB is free"
        )
    served = tmp_path / "served"
    served.mkdir()
    env = {
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "COMFYPACK_HOME": os.environ.get("COMFYPACK_HOME", str(ROOT / ".cache")),
    }
    free_before = _disk_free()
    handler = functools.partial(_ModelSource, directory=str(served))
    _ModelSource.downloads = []
    with _lowest_free_disk() as lowest, http_server(handler) as source:
        pack = _make_pack(tmp_path, source, served, env)
        picture = (tmp_path / "author" / "comfyui" / "input" / "in.png").read_bytes()  # 32×24
        tag = f"localhost/comfypack-test-{uuid.uuid4().hex[:8]}:latest"
        with _image(pack, tag, env) as (built, build_seconds):
            assert built["image"] == tag and built["builder"] == "buildah"
            cfg = image_config(tag)
            size = buildah("images", "--format", "{{.Size}}", tag)
            _check_manifests_match(
                cfg, kubernetes_manifests(plan_build(pack), KubernetesOptions(image=tag)), tag
            )

            cache = tmp_path / "model-cache"
            cache.mkdir()
            os.chown(cache, 1034, 1034)  # the volume as the pod's fsGroup makes it: the user's
            container = Container(
                tag,
                name=f"comfypack-test-{uuid.uuid4().hex[:8]}",
                binds={"/var/lib/comfypack": cache},
            )
            created = time.monotonic()
            container.create()  # `buildah from`: vfs copies the image (a node's pull and unpack)
            create_seconds = time.monotonic() - created
            timings = {}
            try:
                for run in ("empty cache", "cache kept"):
                    port = _free_port()
                    url = f"http://127.0.0.1:{port}"
                    run_env = {"BENTOML_PORT": str(port)}
                    if (
                        os.environ.get("CUDA_VISIBLE_DEVICES") is not None
                    ):  # GPU selection passes through
                        run_env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
                    log = tmp_path / f"container-{run.replace(' ', '-')}.log"
                    started = container.start(log, run_env)
                    try:
                        seen = _wait_ready(url, container, 900)
                        ready = seen[-1][0]
                        answered = _check_answer(url, picture)
                    except AssertionError as e:
                        raise AssertionError(
                            f"{run}: {e}\n--- container log:\n{log.read_text()[-6000:]}"
                        ) from e
                    finally:
                        container.stop()
                    timings[run] = (ready - started, answered - started)
                    # the workspace's model is a hard link of the cached, verified file (its
                    # models folder is in the cache volume), not a copy made at every start
                    (digest,) = [p.name.split(".")[0] for p in served.iterdir()]
                    linked = (
                        cache
                        / "workspaces"
                        / plan_build(pack).pack_sha256[:16]
                        / "models"
                        / "upscale_models"
                        / MODEL
                    )
                    assert os.path.samefile(linked, cache / "models" / "sha256" / digest)
                    if run == "empty cache":
                        assert len(_ModelSource.downloads) == 1
                        # honest while it downloads: not ready, and says why, while the source answers
                        t0 = _ModelSource.downloads[0]
                        during = [(s, b) for t, s, b in seen if t0 <= t <= t0 + MODEL_DELAY]
                        assert during and all(s == 503 for s, _ in during), during
                        assert any(
                            "restor" in str(b.get("reason", ""))
                            or "model" in str(b.get("reason", ""))
                            for _, b in during
                        ), during
                    else:
                        assert len(_ModelSource.downloads) == 1, (
                            "the kept cache was downloaded again"
                        )
                    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
            finally:
                container.remove()
    free_after = _disk_free()
    print(
        f"\nimage {tag}: built in {build_seconds:.0f} s (buildah, vfs), {size}; "
        f"a container of it made in {create_seconds:.0f} s (not in the cold starts)"
    )
    for run, (ready, first) in timings.items():
        print(f"cold start, {run}: /readyz after {ready:.1f} s, first answer after {first:.1f} s")
    print(
        f"disk: {(free_before - lowest[0]) / 1e9:.1f} GB at most while it ran (others' use included), "
        f"{(free_before - free_after) / 1e9:+.2f} GB left behind after clean-up"
    )


def _check_manifests_match(
    cfg: dict[str, object], manifests: dict[str, dict[str, object]], tag: str
) -> None:
    """The Deployment runs the image as the image says: user, port, entrypoint, env, volumes."""
    dep = manifests["deployment.yaml"]
    pod = dep["spec"]["template"]["spec"]  # type: ignore[index]
    (c,) = pod["containers"]
    assert c["image"] == tag
    assert "command" not in c and "args" not in c  # the image's entrypoint runs
    assert cfg["Entrypoint"][:2] == ["/usr/bin/tini", "--"]  # type: ignore[index]
    uid, _, gid = str(cfg["User"]).partition(":")
    assert c["securityContext"]["runAsUser"] == int(uid) != 0 and c["securityContext"][
        "runAsGroup"
    ] == int(gid)
    assert pod["securityContext"]["fsGroup"] == int(gid)
    assert (
        c["securityContext"]["runAsNonRoot"] is True
        and c["securityContext"]["readOnlyRootFilesystem"] is True
    )
    ports = {int(p.split("/")[0]) for p in cfg["ExposedPorts"]}  # type: ignore[union-attr]
    assert {p["containerPort"] for p in c["ports"]} == ports
    image_env = dict(e.split("=", 1) for e in cfg["Env"])  # type: ignore[union-attr]
    assert image_env["BENTOML_PORT"] == str(c["ports"][0]["containerPort"])
    for e in c["env"]:
        assert image_env.get(e["name"]) == e["value"], e
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == set(cfg["Volumes"])  # type: ignore[arg-type]
    assert not any(m.endswith("/comfyui/models") for m in mounts)  # a link into the cache volume
    assert image_env["COMFYPACK_HOME"] in mounts and image_env["HOME"].startswith("/tmp/")
    for probe, path in (
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
        ("startupProbe", "/livez"),
    ):
        assert c[probe]["httpGet"]["path"] == path and c[probe]["httpGet"]["port"] == "http"
