"""The build context of a pack's Bento: what :func:`comfypack.ship.build.build_bento` hands to
``bentoml build`` — the plan (:class:`BuildPlan`) and the folder written from it
(:func:`write_build_context`): the Bento's ``service.py``, comfypack's source, the node package,
the pack and (with ``include_models``) its weights, the settings, ``requirements.txt``, the image's
``setup_image.sh`` and a README.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ComfyPackError, DeployError, RestoreError
from ..serve.bento_runtime import SETTINGS_FILE, WEIGHTS_DIR

__all__ = ["BuildPlan", "write_build_context", "IMAGE_WORKSPACE"]

logger = logging.getLogger(__name__)


#: where the image keeps the restored workspace (``COMFYPACK_WORKSPACE`` in the image).
IMAGE_WORKSPACE = "/home/bentoml/workspace"
_PACK_DIR = "pack"
_PAYLOAD_MARK = "__COMFYPACK_PAYLOAD__"


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


#: the comfypack package this module is part of (copied into a Bento, hashed into its version)
_PACKAGE = Path(__file__).resolve().parents[1]


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
