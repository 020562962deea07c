"""An OCI image of a pack's Bento — ``comfypack containerize PACK`` — built with buildah or docker.

The Bento (:func:`comfypack.ship.build.build_bento`) goes into a build context with a ``Containerfile``
(:func:`containerfile`) on a base image made locally (``make base-image``: Debian with Python
3.11, see ``scripts/base_image.sh``) or any Debian-like image with ``python3.11``. The build:

* installs the Bento's ``requirements.txt`` (the pack's locked packages and comfypack's own) into
  ``/opt/comfypack/venv`` with uv, byte-compiled (the root file system is read-only at run time);
* runs the Bento's image set-up script, which restores the pack's workspace — ComfyUI at its
  locked source, custom nodes at their locked commits, input assets — into ``IMAGE_WORKSPACE``;
* sets the run-time contract (:class:`ImageConfig`, which ``comfypack deploy --target kubernetes``
  writes its manifests from): user ``1034`` (non-root), port 3000, ``bentoml serve`` of the Bento
  under ``tini``, every path it writes a declared volume (the model cache ``$COMFYPACK_HOME``,
  ``/tmp``, the workspace's ``input``), so the root file system can be read-only. The workspace's
  ``models`` folder is a link into the model cache volume (``workspaces/<pack>/models``), so
  restoring the models at start hard-links each cached file instead of copying it (a link cannot
  cross volumes); the start script (``comfypack-start``) makes that folder before the service.

Models are not in the image: at start the service fetches each into ``$COMFYPACK_HOME`` and checks
its sha256 (``/readyz`` says so meanwhile); a kept volume is not downloaded again. GPUs: the
runtime's ``CUDA_VISIBLE_DEVICES`` / ``NVIDIA_VISIBLE_DEVICES`` select them.

Package indexes: the host's own settings (``PIP_*`` / ``UV_*`` variables, else ``pip config``) are
passed to the build as build arguments — never stored in the image — and local (``file://``,
path) indexes and find-links folders are mounted read-only at their own paths (buildah). With
buildah the host's uv cache is mounted too, so torch is not downloaded again; the whole build is
one layer on top of the base (vfs copies layers in full).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ..errors import DeployError, WorkflowError
from .bento_context import IMAGE_WORKSPACE
from .build import BuildOptions, build_bento

__all__ = [
    "ContainerizeOptions",
    "ContainerizeResult",
    "ImageConfig",
    "image_config",
    "containerfile",
    "build_script",
    "host_index_settings",
    "IndexSettings",
    "find_builder",
    "containerize",
    "DEFAULT_BASE_IMAGE",
    "MODEL_CACHE_PATH",
    "IMAGE_UID",
    "IMAGE_PORT",
    "BENTO_PATH",
    "VENV_PATH",
]

logger = logging.getLogger(__name__)

#: what ``make base-image`` makes (scripts/base_image.sh); ``COMFYPACK_BASE_IMAGE`` overrides.
DEFAULT_BASE_IMAGE = "localhost/comfypack-base:bookworm-py3.11"
#: the model cache volume (``COMFYPACK_HOME`` in the container).
MODEL_CACHE_PATH = "/var/lib/comfypack"
IMAGE_UID = 1034  # the `bentoml` user, as in images from `bentoml containerize`
IMAGE_PORT = 3000
BENTO_PATH = "/home/bentoml/bento"
START_SCRIPT = "/usr/local/bin/comfypack-start"
VENV_PATH = "/opt/comfypack/venv"
_UV_CACHE_IN_BUILD = "/root/.cache/uv"
_BUILD_HOME = "/tmp/comfypack-build-home"  # COMFYPACK_HOME of the image's set-up (removed after)
_INDEX_ENV_IN_BUILD = "/run/comfypack-index.env"
_CA_IN_BUILD = "/run/comfypack-ca.pem"
_CERT_VARS = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "UV_CERT")  # UV_CERT: not uv's
#: index settings passed as build arguments (uv reads the UV_* ones, pip the PIP_* ones)
_INDEX_ARGS = (
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_INDEX_STRATEGY",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_TRUSTED_HOST",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


# ----------------------------------------------------------------------------------------------
# the image's run-time contract


@dataclass(frozen=True)
class ImageConfig:
    """What the image runs with; the Kubernetes manifests are written from this."""

    uid: int = IMAGE_UID
    port: int = IMAGE_PORT
    entrypoint: tuple[str, ...] = (
        "/usr/bin/tini",
        "--",
        START_SCRIPT,
        f"{VENV_PATH}/bin/python",
        "-m",
        "bentoml",
        "serve",
        BENTO_PATH,
    )
    workdir: str = BENTO_PATH
    env: dict[str, str] = field(default_factory=dict)
    #: every path the service writes; all else is read-only at run time
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    #: where the workspace's ``models`` folder links to (in the model cache volume)
    models_dir: str = ""

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.uid}"


def image_config(
    envs: dict[str, str], pack_sha256: str, labels: dict[str, str] | None = None
) -> ImageConfig:
    """The run-time contract of an image whose Bento has the environment ``envs`` and serves
    the pack ``pack_sha256``."""
    env = {
        "PATH": f"{VENV_PATH}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # compiled at build; the root file system is read-only
        "BENTO_PATH": BENTO_PATH,
        "BENTOML_CONTAINERIZED": "true",
        "BENTOML_HOME": "/tmp/bentoml",  # BentoML's run-time files
        "BENTOML_HOST": "0.0.0.0",
        "BENTOML_PORT": str(IMAGE_PORT),
        "HOME": "/tmp/home",  # what libraries keep under ~
        "COMFYPACK_HOME": MODEL_CACHE_PATH,  # model cache (sha256-verified), per-service state
        # the NVIDIA container runtime exposes the GPUs these select (all by default)
        "NVIDIA_VISIBLE_DEVICES": "all",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        **envs,
    }
    workspace = env.get("COMFYPACK_WORKSPACE", IMAGE_WORKSPACE)
    volumes = (MODEL_CACHE_PATH, "/tmp", f"{workspace}/comfyui/input")
    return ImageConfig(
        env=env,
        volumes=volumes,
        labels=dict(labels or {}),
        models_dir=f"{MODEL_CACHE_PATH}/workspaces/{pack_sha256[:16]}/models",
    )


# ----------------------------------------------------------------------------------------------
# Containerfile


def _dockerfile_json(items: list[str] | tuple[str, ...]) -> str:
    return json.dumps(list(items))


def build_script(config: ImageConfig) -> str:
    """The image's one build step (``build.sh`` in the build context; runs as root)."""
    workspace = config.env.get("COMFYPACK_WORKSPACE", IMAGE_WORKSPACE)
    volumes = " ".join(shlex.quote(v) for v in config.volumes)
    models = shlex.quote(config.models_dir)
    return f"""#!/bin/sh
# written by `comfypack containerize`: the image's one build step
set -eu
# the host's package-index settings, mounted for this step only (buildah); docker: build arguments
if [ -f {_INDEX_ENV_IN_BUILD} ]; then set -a; . {_INDEX_ENV_IN_BUILD}; set +a; fi
# and the certificate authorities the host trusts (a TLS-inspecting proxy's, say): build only
if [ -s {_CA_IN_BUILD} ]; then
  export SSL_CERT_FILE={_CA_IN_BUILD} PIP_CERT={_CA_IN_BUILD} REQUESTS_CA_BUNDLE={_CA_IN_BUILD}
fi
groupadd -g {config.uid} -o bentoml
useradd -m -u {config.uid} -g {config.uid} -o -r -d /home/bentoml bentoml
cp -a /ctx/bento {BENTO_PATH}
req={BENTO_PATH}/env/python/requirements.txt
python3.11 -m venv --without-pip {VENV_PATH}
# uv at the version the lock pins (the host's: its cache layout is then the same)
python3.11 -m venv /tmp/uv-venv
/tmp/uv-venv/bin/pip install -q --disable-pip-version-check "$(grep -m1 -iE '^uv==' "$req" || echo uv)"
UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_NO_PROGRESS=1 /tmp/uv-venv/bin/uv pip install \\
  --python {VENV_PATH}/bin/python -r "$req"
setup=$(ls {BENTO_PATH}/env/docker/script__* 2>/dev/null | head -n 1 || true)
if [ -n "$setup" ]; then
  PYTHON={VENV_PATH}/bin/python COMFYPACK_WORKSPACE={workspace} COMFYPACK_BUILD_HOME={_BUILD_HOME} \\
    BENTO_USER=bentoml sh "$setup"
fi
{VENV_PATH}/bin/python -m compileall -q -j 0 {BENTO_PATH}/src {workspace} >/dev/null || true
# the models folder: a link into the model cache volume (hard links from the cache, no copies)
rm -rf {workspace}/comfyui/models
ln -s {models} {workspace}/comfyui/models
# the start script (written by comfypack containerize): makes that folder, then runs the service
printf '%s\\n' '#!/bin/sh' 'set -e' 'mkdir -p {models}' 'exec "$@"' > {START_SCRIPT}
chmod 755 {START_SCRIPT}
mkdir -p {volumes}
chown -R {config.uid}:{config.uid} {BENTO_PATH} {MODEL_CACHE_PATH} /home/bentoml
chmod 1777 /tmp
rm -rf /tmp/uv-venv {_BUILD_HOME} /root/.cache/pip
"""


def containerfile(config: ImageConfig, *, base_image: str, secrets: bool = False) -> str:
    """The Containerfile that builds the image from a build context holding the Bento at
    ``bento/`` and :func:`build_script` (one RUN: with buildah, one layer on ``base_image``).
    ``secrets`` (docker/BuildKit): the index settings and CA file come as build secrets and uv's
    cache as a cache mount (buildah mounts them with ``--volume`` instead)."""
    mounts = (
        (
            f"--mount=type=secret,id=comfypack-index,target={_INDEX_ENV_IN_BUILD} "
            f"--mount=type=secret,id=comfypack-ca,target={_CA_IN_BUILD} "
            f"--mount=type=cache,target={_UV_CACHE_IN_BUILD} "
        )
        if secrets
        else ""
    )
    env = "".join(f"ENV {k}={json.dumps(v)}\n" for k, v in sorted(config.env.items()))
    labels = "".join(
        f"LABEL {json.dumps(k)}={json.dumps(v)}\n" for k, v in sorted(config.labels.items())
    )
    return f"""# written by `comfypack containerize`: the Bento under bento/ on {base_image}
FROM {base_image}
COPY bento /ctx/bento
COPY build.sh /ctx/build.sh
RUN {mounts}sh /ctx/build.sh && rm -rf /ctx
{env}{labels}USER {config.user}
WORKDIR {config.workdir}
EXPOSE {config.port}
VOLUME {_dockerfile_json(config.volumes)}
ENTRYPOINT {_dockerfile_json(config.entrypoint)}
"""


# ----------------------------------------------------------------------------------------------
# host package-index settings


def _pip_config() -> dict[str, str]:
    """``pip config list`` of this interpreter (the user's and the machine's settings)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else ():
        key, _, value = line.partition("=")
        out[key.split(".", 1)[-1].strip()] = value.strip().strip("'\"")
    return out


def _local_path(entry: str) -> str | None:
    """The host folder an index or find-links entry names (``file://`` URL or path), if any."""
    if entry.startswith("file:"):
        return urlparse(entry).path or None
    if "://" not in entry and entry.startswith("/"):
        return entry
    return None


@dataclass(frozen=True)
class IndexSettings:
    """The host's package-index settings for a build (never written into the image)."""

    env: dict[str, str]  # PIP_* / UV_* / proxy variables for the build step
    folders: list[str]  # local indexes and find-links folders (mounted read-only, same path)
    ca_file: str | None  # the certificate authorities pip / requests / uv should trust


def host_index_settings(
    env: dict[str, str] | None = None, pip_config: dict[str, str] | None = None
) -> IndexSettings:
    """The host's package-index settings (:class:`IndexSettings`).

    The ``PIP_*`` / ``UV_*`` variables as set; where no default or extra index variable is set,
    ``pip config``'s ``index-url`` / ``extra-index-url`` / ``find-links`` become the uv ones too
    (uv does not read pip's configuration). Local indexes and find-links folders that exist are
    returned to be mounted read-only at the same path; the CA file from ``PIP_CERT`` /
    ``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE`` / pip's ``cert``."""
    env = dict(os.environ if env is None else env)
    args = {k: env[k] for k in _INDEX_ARGS if env.get(k)}
    config = _pip_config() if pip_config is None else pip_config
    default = (
        env.get("UV_DEFAULT_INDEX")
        or env.get("UV_INDEX_URL")
        or env.get("PIP_INDEX_URL")
        or config.get("index-url")
    )
    extra = (
        env.get("UV_INDEX")
        or env.get("UV_EXTRA_INDEX_URL")
        or env.get("PIP_EXTRA_INDEX_URL")
        or config.get("extra-index-url")
        or ""
    ).split()
    links = env.get("UV_FIND_LINKS") or env.get("PIP_FIND_LINKS") or config.get("find-links") or ""
    links_list = links.replace(",", " ").split()
    if default:
        args.setdefault("UV_INDEX_URL", default)
        args.setdefault("PIP_INDEX_URL", default)
    if extra:
        args.setdefault("UV_EXTRA_INDEX_URL", " ".join(extra))
        args.setdefault("PIP_EXTRA_INDEX_URL", " ".join(extra))
        args.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")  # as pip: every index considered
    if links_list:
        args.setdefault("UV_FIND_LINKS", ",".join(links_list))
        args.setdefault("PIP_FIND_LINKS", " ".join(links_list))
    mounts = []
    for entry in [*([default] if default else []), *extra, *links_list]:
        path = _local_path(entry)
        if path:
            # a local index is <root>/simple whose pages link to files beside it: mount <root>
            folder = Path(path.rstrip("/"))
            folder = folder.parent if folder.name == "simple" else folder
            if folder.is_dir() and str(folder) not in mounts:
                mounts.append(str(folder))
    ca = next(
        (
            v
            for v in [*(env.get(k) for k in _CERT_VARS), config.get("cert")]
            if v and Path(v).is_file()
        ),
        None,
    )
    return IndexSettings(env=args, folders=mounts, ca_file=ca)


# ----------------------------------------------------------------------------------------------
# build


@dataclass(frozen=True)
class ContainerizeOptions:
    tag: str | None = None  # default: the Bento's tag (name:version)
    base_image: str | None = None  # default: $COMFYPACK_BASE_IMAGE or DEFAULT_BASE_IMAGE
    builder: str = "auto"  # buildah | docker | auto (buildah where it runs, else docker)
    storage_driver: str | None = None  # buildah --storage-driver (default: $STORAGE_DRIVER or vfs)
    isolation: str | None = None  # buildah --isolation (default: $BUILDAH_ISOLATION or chroot)
    uv_cache: Path | None = None  # host uv cache mounted into the build (default: `uv cache dir`)
    mount_uv_cache: bool = True


@dataclass(frozen=True)
class ContainerizeResult:
    image: str
    bento: str
    builder: str
    config: ImageConfig
    seconds: float
    command: list[str]


def find_builder(preferred: str = "auto") -> str:
    """``buildah`` or ``docker`` (a daemon that answers), whichever is present; an error naming
    what to install otherwise."""
    if preferred not in ("auto", "buildah", "docker"):
        raise WorkflowError(f"--builder {preferred!r}: use buildah or docker")
    if preferred in ("auto", "buildah") and shutil.which("buildah"):
        return "buildah"
    if preferred in ("auto", "docker") and shutil.which("docker"):
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
        )
        if proc.returncode == 0:
            return "docker"
        if preferred == "docker":
            raise DeployError(f"docker does not answer: {proc.stderr.strip()[-300:]}")
    raise DeployError(
        "no image builder: install buildah (`apt-get install buildah`; `make base-image` "
        "does it as root) or run a Docker daemon"
    )


def buildah_global_args(storage_driver: str | None = None) -> list[str]:
    driver = storage_driver or os.environ.get("STORAGE_DRIVER") or "vfs"
    return ["--storage-driver", driver]


def _uv_cache_dir() -> Path | None:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    try:
        proc = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
    return path if path and path.is_dir() else None


def _image_exists(builder: str, image: str, gargs: list[str]) -> bool:
    cmd = (
        ["buildah", *gargs, "inspect", "--type", "image", image]
        if builder == "buildah"
        else ["docker", "image", "inspect", image]
    )
    return subprocess.run(cmd, capture_output=True).returncode == 0


def containerize(
    pack: Path,
    build_options: BuildOptions | None = None,
    options: ContainerizeOptions | None = None,
    *,
    hf_endpoint: str | None = None,
    civitai_url: str | None = None,
) -> ContainerizeResult:
    """Build (or reuse) the pack's Bento, then its image; returns the image name. The mirrors
    are for ``include_models`` (weights collected into the Bento)."""
    import bentoml

    options = options or ContainerizeOptions()
    builder = find_builder(options.builder)
    base = options.base_image or os.environ.get("COMFYPACK_BASE_IMAGE") or DEFAULT_BASE_IMAGE
    gargs = buildah_global_args(options.storage_driver) if builder == "buildah" else []
    if not _image_exists(builder, base, gargs):
        raise DeployError(
            f"the base image {base} is not there: run `make base-image` (Debian with "
            "Python 3.11, made locally) or pass --base-image"
        )
    result = build_bento(
        Path(pack), build_options, hf_endpoint=hf_endpoint, civitai_url=civitai_url, reuse=True
    )
    plan = result.plan
    bento = bentoml.bentos.get(plan.tag)
    image = options.tag or plan.tag
    config = image_config(
        plan.envs,
        plan.pack_sha256,
        {
            **plan.labels,
            "comfypack-bento": plan.tag,
            "org.opencontainers.image.title": plan.name,
            "org.opencontainers.image.version": plan.version,
        },
    )
    index = host_index_settings()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="comfypack-image-") as tmp:
        ctx = Path(tmp)
        shutil.copytree(bento.path, ctx / "bento", symlinks=True)
        (ctx / "Containerfile").write_text(
            containerfile(config, base_image=base, secrets=builder == "docker"), encoding="utf-8"
        )
        (ctx / "build.sh").write_text(build_script(config), encoding="utf-8")
        # the index settings as a file for the build step only: not in the image or its history
        index_env = Path(tmp + ".index.env")
        fd = os.open(index_env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(index.env.items())))
        ca = index.ca_file or os.devnull
        cmd: list[str]
        if builder == "buildah":
            isolation = options.isolation or os.environ.get("BUILDAH_ISOLATION") or "chroot"
            cmd = [
                "buildah",
                *gargs,
                "bud",
                "--isolation",
                isolation,
                "--network",
                "host",
                "--pull-never",
                "--layers=false",
                "--format",
                "oci",
                "-f",
                str(ctx / "Containerfile"),
                "-t",
                image,
            ]
            for folder in index.folders:
                cmd += ["--volume", f"{folder}:{folder}:ro"]
            cache = options.uv_cache or (_uv_cache_dir() if options.mount_uv_cache else None)
            if cache:
                cmd += ["--volume", f"{cache}:{_UV_CACHE_IN_BUILD}"]
            cmd += ["--volume", f"{index_env}:{_INDEX_ENV_IN_BUILD}:ro"]
            if index.ca_file:
                cmd += ["--volume", f"{index.ca_file}:{_CA_IN_BUILD}:ro"]
        else:  # BuildKit: secrets and a cache mount (local index folders cannot be mounted)
            cmd = [
                "docker",
                "build",
                "--network",
                "host",
                "-f",
                str(ctx / "Containerfile"),
                "-t",
                image,
                "--secret",
                f"id=comfypack-index,src={index_env}",
                "--secret",
                f"id=comfypack-ca,src={ca}",
            ]
        cmd.append(str(ctx))
        logger.info("%s: building %s from Bento %s on %s", builder, image, plan.tag, base)
        try:
            proc = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "DOCKER_BUILDKIT": "1"},
            )  # docker: secrets
        finally:
            index_env.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise DeployError(
            f"{builder} could not build {image} (exit {proc.returncode}): "
            f"{proc.stdout.strip()[-3000:]}"
        )
    return ContainerizeResult(
        image=image,
        bento=plan.tag,
        builder=builder,
        config=config,
        seconds=time.monotonic() - started,
        command=cmd,
    )
