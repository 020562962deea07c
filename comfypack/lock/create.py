"""Record the environment a workflow runs in: ``comfypack.lock.json``.

:func:`create_lock` gathers, for one workflow and one ComfyUI tree:

- the Python that runs ComfyUI (version, platform), its packages (:func:`list_packages` asks
  *that* interpreter, which need not be the one running comfypack) — ``name==version``, or the
  PEP 610 direct reference a package was installed from (an archive URL with its sha256, git at
  its commit, a local path: warned) — and the package indexes (:func:`index_urls`);
- ComfyUI's version and source (git URL + commit for a checkout, else the source that
  ``comfypack comfyui install`` recorded);
- every custom node (:func:`custom_nodes`): git remote + commit, with local changes as a patch the
  pack carries, a warning for an unpushed commit or a remote only this machine reaches (errors
  with ``strict``); plain folders and single ``.py`` files by content hash; the ComfyUI registry id
  and version where the node came from the registry; and comfypack's own node package;
- every model the workflow names (:func:`find_models`: candidate paths in ComfyUI's model folders
  and ``extra_model_paths.yaml``, never a scan), with size, sha256 and download sources — a
  model file the workflow names that is not there is an error unless allowed;
- the workflow's own hash.

The file format (schema, deterministic serialisation) lives in :mod:`comfypack.lockfile`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LockError, ModelsMissing
from ..files.hashing import HashCache, hash_files, sha256_file
from ..lockfile import (
    COMFYPACK_NODES,
    ComfyUIInfo,
    CustomNode,
    FileSource,
    GitSource,
    Lock,
    Model,
    Package,
    PatchInfo,
    PythonInfo,
    RegistryInfo,
    TreeSource,
    WorkflowInfo,
    is_local_url,
    requirement,
    valid_package,
)
from .gitstate import git_state, local_patch
from .sources import ModelFile, Resolver, default_resolvers, resolve_sources
from .trees import SKIP_NAMES, safe_relpath, tree_sha256

__all__ = [
    "find_models",
    "missing_models",
    "MODEL_SUFFIXES",
    "custom_nodes",
    "list_packages",
    "python_info",
    "comfyui_info",
    "tree_sha256",
    "workflow_sha256",
    "create_lock",
    "missing_sources",
    "COMFYPACK_NODES",
    "DEV_TOOLS",
    "index_urls",
]

logger = logging.getLogger(__name__)

#: comfypack itself and its development tools: not part of the environment ComfyUI needs (what
#: only they depend on is left out too; see :func:`list_packages`). pip: a venv brings its own.
DEV_TOOLS = frozenset(
    {"comfypack", "pytest", "mypy", "ruff", "pip", "playwright", "kubernetes-validate"}
)
_DEV_PREFIXES = ("pytest-", "types-")

#: model folders whose files ship with ComfyUI itself (not models to fetch).
_SOURCE_FOLDERS = frozenset({"configs"})


# ----------------------------------------------------------------------------------------------
# models


def _model_dirs(comfyui_dir: Path) -> list[tuple[str, Path]]:
    """ComfyUI's model folders as ``(folder name, directory)``, in ComfyUI's search order."""
    dirs: list[tuple[str, Path]] = []
    models = comfyui_dir / "models"
    if models.is_dir():
        for sub in sorted(models.iterdir()):
            if sub.is_dir() and not sub.name.startswith(".") and sub.name not in _SOURCE_FOLDERS:
                dirs.append((sub.name, sub))
    dirs += _extra_model_dirs(comfyui_dir / "extra_model_paths.yaml")
    return dirs


def _extra_model_dirs(yaml_path: Path) -> list[tuple[str, Path]]:
    """The folders an ``extra_model_paths.yaml`` adds, read the way ComfyUI reads it."""
    if not yaml_path.is_file():
        return []
    import yaml

    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise LockError(f"{yaml_path}: cannot read it ({e}); fix or move it aside") from e
    if config is None:
        return []
    if not isinstance(config, dict):
        raise LockError(f"{yaml_path}: expected a mapping of sections, got {type(config).__name__}")
    out: list[tuple[str, Path]] = []
    for section in config.values():
        if not isinstance(section, dict):
            continue
        conf = dict(section)
        base = conf.pop("base_path", None)
        conf.pop("is_default", None)
        base_path: Path | None = None
        if isinstance(base, str) and base:
            base_path = Path(os.path.expandvars(os.path.expanduser(base)))
            if not base_path.is_absolute():
                base_path = yaml_path.parent / base_path
        for folder, value in conf.items():
            if folder == "custom_nodes" or folder in _SOURCE_FOLDERS or not isinstance(value, str):
                continue
            for line in value.split("\n"):
                line = line.strip()
                if not line:
                    continue
                if base_path is not None:
                    full = base_path / line
                elif os.path.isabs(line):
                    full = Path(line)
                else:
                    full = yaml_path.parent / line
                out.append((str(folder), Path(os.path.normpath(full))))
    return out


def _string_values(workflow: Mapping[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for node in workflow.values():
        if not isinstance(node, Mapping):
            continue
        inputs = node.get("inputs")
        if not isinstance(inputs, Mapping):
            continue
        for value in inputs.values():
            if isinstance(value, str):
                seen.setdefault(value, None)
    return list(seen)


def find_models(workflow: Mapping[str, Any], comfyui_dir: Path) -> list[tuple[str, str, Path]]:
    """Every model file the workflow names, as ``(folder, relative path, file)``, sorted.

    A string input value names a model when ``<folder dir>/<value>`` is a file in one of ComfyUI's
    model folders (``models/<folder>/`` of the tree, then each folder that
    ``extra_model_paths.yaml`` adds). Only those candidate paths are checked. The first match per
    folder name wins, as in ComfyUI; a name found in several folders is recorded for each.
    """
    comfyui_dir = Path(comfyui_dir)
    dirs = _model_dirs(comfyui_dir)
    found: dict[tuple[str, str], Path] = {}
    for value in _string_values(workflow):
        rel = safe_relpath(value)
        if rel is None:
            continue
        for folder, directory in dirs:
            if (folder, rel) in found:
                continue
            path = directory / rel
            if path.is_file():
                found[(folder, rel)] = path
    return [(folder, rel, found[(folder, rel)]) for folder, rel in sorted(found)]


#: endings of model weight files: a string input that ends so names a model file
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".gguf", ".onnx")


def missing_models(workflow: Mapping[str, Any], comfyui_dir: Path) -> ModelsMissing | None:
    """The error naming every input that names a model file (by its ending, see
    :data:`MODEL_SUFFIXES`) which none of ComfyUI's model folders holds; ``None`` when all are
    there. ``details``: ``{"node", "class_type", "input", "file"}`` per missing reference."""
    comfyui_dir = Path(comfyui_dir)
    dirs = _model_dirs(comfyui_dir)
    present = {rel for _, rel, _ in find_models(workflow, comfyui_dir)}
    missing: list[dict[str, str]] = []
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping) or str(node.get("class_type", "")).startswith(
            "ComfyPack"
        ):
            continue  # comfypack's own input nodes take files from the caller, not model folders
        for name, value in inputs.items():
            if not isinstance(value, str) or not value.lower().endswith(MODEL_SUFFIXES):
                continue
            rel = safe_relpath(value)
            if rel is not None and (comfyui_dir / "input" / rel).is_file():
                continue  # an input file (LoadImage-like nodes), not a model
            if rel is None or rel not in present:
                missing.append(
                    {
                        "node": str(node_id),
                        "class_type": str(node.get("class_type")),
                        "input": str(name),
                        "file": value,
                    }
                )
    if not missing:
        return None
    extra = len([d for d in dirs if not d[1].is_relative_to(comfyui_dir / "models")])
    where = f"{comfyui_dir / 'models'}/<folder>/" + (
        f" and {extra} folder(s) from extra_model_paths.yaml" if extra else ""
    )
    refs = "; ".join(
        f"{m['file']} (node {m['node']} {m['class_type']}, input {m['input']})" for m in missing
    )
    return ModelsMissing(
        f"{len(missing)} model file(s) the workflow names are not in ComfyUI's model folders: {refs}. "
        f"Searched {where}. Put each file into its folder (e.g. models/checkpoints/), or serve a "
        "pack whose lock says where to download them",
        details=missing,
    )


# ----------------------------------------------------------------------------------------------
# trees and custom nodes


def _registry(path: Path) -> RegistryInfo | None:
    """The ComfyUI registry id and version of a node installed from the registry (it carries a
    ``.tracking`` file and its ``pyproject.toml`` names it), else ``None``."""
    if not (path / ".tracking").is_file() or not (path / "pyproject.toml").is_file():
        return None
    import tomllib

    try:
        project = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8")).get(
            "project", {}
        )
        return RegistryInfo(id=str(project["name"]), version=str(project["version"]))
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _problem(message: str, strict: bool, fix: str) -> None:
    """A loss the lock cannot repair: a warning, or (``strict``) a :class:`LockError`."""
    if strict:
        raise LockError(f"{message} (--strict); {fix}")
    logger.warning("%s; %s", message, fix)


def _node_entry(name: str, path: Path, *, strict: bool = False) -> CustomNode:
    state = git_state(path)
    registry = _registry(path)
    if state is not None:
        if state.url:
            source = GitSource(type="git", url=state.url, commit=state.commit)
            if is_local_url(state.url):
                _problem(
                    f"custom node {name}: its remote {state.url} can be reached only from this "
                    "machine",
                    strict,
                    "push it to a shared remote (git remote set-url origin URL)",
                )
            if not state.pushed:
                _problem(
                    f"custom node {name}: commit {state.commit[:12]} is on no branch of its "
                    f"remote {state.url}",
                    strict,
                    "push it (git push) so a restore can fetch it",
                )
            patch = None
            if state.dirty:
                diff = local_patch(path)
                if diff:
                    patch = PatchInfo(sha256=hashlib.sha256(diff).hexdigest(), size=len(diff))
                    logger.info(
                        "custom node %s has local changes: the pack carries them as a patch", name
                    )
            return CustomNode(
                name=name, source=source, dirty=state.dirty, patch=patch, registry=registry
            )
        logger.warning(
            "custom node %s is a git repo without a remote; recording its content instead", name
        )
    return CustomNode(
        name=name,
        source=TreeSource(type="tree", sha256=tree_sha256(path)),
        dirty=False,
        registry=registry,
    )


def custom_nodes(comfyui_dir: Path, *, strict: bool = False) -> list[CustomNode]:
    """Every custom node in ``custom_nodes/``: folders (git: remote, commit, local changes as a
    patch; otherwise a content hash) and single ``.py`` files (content hash), plus comfypack's
    own node package, sorted by name. ``strict``: an unpushed commit or a remote only this machine
    reaches is an error, not a warning.

    ``comfypack_nodes`` is always *this* comfypack's package — the one its workers load, even
    where the tree holds another copy (see :meth:`ComfyUIProcess._node_setup`)."""
    from ..comfyui.process import node_package_copies, node_package_dir

    nodes: dict[str, CustomNode] = {}
    folder = Path(comfyui_dir) / "custom_nodes"
    own = node_package_dir() / COMFYPACK_NODES
    copies = {c.name for c in node_package_copies(folder)}  # `comfypack_nodes`, registry installs
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or entry.name in SKIP_NAMES:
                continue
            if entry.is_file() and entry.name.endswith(".py"):  # ComfyUI loads single .py files too
                nodes[entry.name] = CustomNode(
                    name=entry.name,
                    source=FileSource(type="file", sha256=sha256_file(entry)),
                    dirty=False,
                )
                continue
            if not entry.is_dir():
                continue
            if entry.name in copies:
                if entry.resolve() != own.resolve():
                    logger.warning(
                        "%s is another copy of comfypack's node package; the lock records "
                        "this comfypack's (the one its workers load)",
                        entry,
                    )
                continue
            nodes[entry.name] = _node_entry(entry.name, entry, strict=strict)
    nodes[COMFYPACK_NODES] = CustomNode(
        name=COMFYPACK_NODES, source=TreeSource(type="tree", sha256=tree_sha256(own)), dirty=False
    )
    return [nodes[k] for k in sorted(nodes)]


# ----------------------------------------------------------------------------------------------
# Python


_PROBE = r"""
import json, platform, re, sysconfig
from importlib import metadata
pkgs = {}
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name and name not in pkgs:
        reqs = []
        for r in d.requires or []:
            if "extra" in r.partition(";")[2]:
                continue  # only what an install without extras pulls in
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)
            if m:
                reqs.append(m.group(1))
        try:
            direct = json.loads(d.read_text("direct_url.json") or "null")
        except ValueError:
            direct = None
        pkgs[name] = {"version": d.version, "requires": reqs, "direct_url": direct}
print(json.dumps({"version": platform.python_version(), "platform": sysconfig.get_platform(),
                  "packages": pkgs}))
"""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _probe(python: str) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONNOUSERSITE": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LockError(f"cannot run {python} to list its packages: {e}; pass --python PY") from e
    if proc.returncode != 0:
        raise LockError(f"{python} failed to list its packages: {proc.stderr.strip()[-500:]}")
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise LockError(f"{python} printed no package list: {proc.stdout[-300:]!r}") from e
    return dict(data)


def _is_dev_tool(name: str) -> bool:
    canon = _canonical(name)
    return canon in DEV_TOOLS or canon.startswith(_DEV_PREFIXES)


def _closure(roots: set[str], deps: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(deps.get(name, ()))
    return seen


#: the largest archive whose sha256 a lock computes by fetching it
_ARCHIVE_MAX = 4 << 30


def _archive_sha256(url: str) -> str | None:
    """The sha256 of the archive at ``url`` (``file://`` read, http(s) fetched), or ``None``
    (with a warning) when it cannot be had."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    import httpx

    try:
        if url.startswith("file:"):
            return sha256_file(Path(url2pathname(urlsplit(url).path)))
        h = hashlib.sha256()
        n = 0
        with httpx.stream(
            "GET", url, follow_redirects=True, timeout=httpx.Timeout(30.0, read=120.0)
        ) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes(1 << 20):
                n += len(chunk)
                if n > _ARCHIVE_MAX:
                    raise OSError(f"larger than {_ARCHIVE_MAX} bytes")
                h.update(chunk)
        return h.hexdigest()
    except (OSError, httpx.HTTPError) as e:
        logger.warning("cannot fetch %s to pin its sha256 (%s)", url, e)
        return None


def _direct(
    name: str, version: str, info: Any, strict: bool, fetch_hashes: bool = False
) -> Package | None:
    """The package as a PEP 610 direct reference (``name @ url``, git at its commit), from its
    ``direct_url.json``; ``None`` when it came from an index. An archive whose installer recorded
    no hash (uv does not) is fetched to pin its sha256 when ``fetch_hashes``. A local path or
    file:// URL is recorded, with a warning (an error under ``strict``): only this machine can
    restore it."""
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        return None
    from .gitstate import clean_url

    url = clean_url(info["url"])
    vcs = info.get("vcs_info") if isinstance(info.get("vcs_info"), dict) else None
    archive = info.get("archive_info") if isinstance(info.get("archive_info"), dict) else None
    sha: str | None = None
    commit: str | None = None
    if vcs is not None:
        if vcs.get("vcs") != "git":
            raise LockError(
                f"package {name} was installed from {vcs.get('vcs')} ({url}); comfypack "
                "locks git sources only — install it from git or an index"
            )
        url, commit = f"git+{url}", str(vcs.get("commit_id") or "")
    elif archive is not None:
        hashes = archive.get("hashes") if isinstance(archive.get("hashes"), dict) else {}
        legacy = str(archive.get("hash") or "")
        sha = hashes.get("sha256") or (legacy[7:] if legacy.startswith("sha256=") else None)
        if sha is None and fetch_hashes and not info.get("dir_info"):
            sha = _archive_sha256(url)
    try:
        pkg = Package(name=name, version=version, url=url, sha256=sha, commit=commit)
        requirement(name, version, url=url, sha256=sha, commit=commit)
    except (ValueError, LockError) as e:
        raise LockError(
            f"package {name} was installed from {url[:200]!r}, which a lock cannot "
            f"record ({' '.join(str(e).split())[:200]})"
        ) from e
    if is_local_url(url.removeprefix("git+")):
        _problem(
            f"package {name} was installed from {url}, on this machine only",
            strict,
            "publish it (an index, or an https/git URL) so a restore elsewhere can install it",
        )
    elif archive is not None and sha is None:
        logger.warning(
            "package %s comes from %s without a recorded hash; the restore trusts that URL",
            name,
            url,
        )
    return pkg


def _packages(
    data: Mapping[str, Any], *, strict: bool = False, fetch_hashes: bool = False
) -> list[Package]:
    """Every installed distribution except comfypack's tooling: the dev tools themselves and what
    only they pull in (pytest's pluggy, mypy's mypy-extensions …). comfypack's own dependencies
    stay (bentoml serves the pack). Packages installed from a URL, git or a path keep that source
    (PEP 610 ``direct_url.json``)."""
    versions: dict[str, str] = {}
    deps: dict[str, set[str]] = {}
    directs: dict[str, Any] = {}
    for name, info in data.get("packages", {}).items():
        canon = _canonical(name)
        if canon in versions:
            continue
        versions[canon] = str(info["version"])
        directs[canon] = info.get("direct_url")
        deps[canon] = {_canonical(r) for r in info.get("requires", [])}
    for canon in deps:
        deps[canon] &= set(versions)
    dev = {n for n in versions if _is_dev_tool(n)}
    required = set().union(*deps.values()) if deps else set()
    roots = {n for n in versions if n not in dev and n not in required} | deps.get(
        "comfypack", set()
    )
    keep = _closure(roots, {n: d - dev for n, d in deps.items() if n not in dev})
    only_tooling = _closure(dev, deps) - keep
    excluded = dev | only_tooling
    invalid = sorted(n for n in versions if n not in excluded and not valid_package(n, versions[n]))
    if invalid:  # a lock pins PEP 508 names to PEP 440 versions only (what pip can take safely)
        logger.warning(
            "leaving out packages whose version is not PEP 440: %s",
            ", ".join(f"{n} {versions[n]!r}" for n in invalid),
        )
    return [
        _direct(n, versions[n], directs.get(n), strict, fetch_hashes)
        or Package(name=n, version=versions[n])
        for n in sorted(versions)
        if n not in excluded and n not in invalid
    ]


def list_packages(python: str) -> list[Package]:
    """The packages installed for the interpreter ``python`` (asked in a subprocess), by canonical
    name and exact version, without comfypack, its development tools and what only they need."""
    return _packages(_probe(python))


#: the default package index (pip's and uv's)
PYPI = "https://pypi.org/simple"
_INDEX_VARS = (
    ("PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX"),
    ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX"),
)


def index_urls(python: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The package indexes the environment installs from, the default one first: the
    ``PIP_*`` / ``UV_*`` index variables, else ``pip config`` of ``python``; credentials removed."""
    from .gitstate import clean_url

    env = os.environ if env is None else env
    default = next((env[v] for v in _INDEX_VARS[0] if env.get(v)), None)
    extra = [u for v in _INDEX_VARS[1] for u in (env.get(v) or "").split()]
    config = ""
    # pip's configuration is the user's and the machine's; a venv without pip: ask this one's
    for py in dict.fromkeys([python, sys.executable]) if default is None or not extra else ():
        try:
            proc = subprocess.run(
                [py, "-m", "pip", "config", "list"],
                capture_output=True,
                text=True,
                timeout=60,
                env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            config = proc.stdout
            break
    if config:
        for line in config.splitlines():
            key, _, value = line.partition("=")
            value = value.strip().strip("'\"")
            if key.endswith(".index-url") and default is None:
                default = value
            elif key.endswith(".extra-index-url") and not extra:
                extra = value.split()
    urls = [clean_url(u.rstrip("/")) for u in [default or PYPI, *extra] if u]
    return list(dict.fromkeys(urls))


def python_info(python: str) -> PythonInfo:
    data = _probe(python)
    return PythonInfo(version=data["version"], platform=data["platform"])


# ----------------------------------------------------------------------------------------------
# ComfyUI and workflow


def comfyui_info(comfyui_dir: Path, *, strict: bool = False) -> ComfyUIInfo:
    """ComfyUI's version and where the tree came from (a git checkout, or the source recorded by
    ``comfypack comfyui install``)."""
    from ..comfyui.source import MARKER, comfyui_version, read_marker, to_lock

    comfyui_dir = Path(comfyui_dir)
    version = comfyui_version(comfyui_dir)
    if not (comfyui_dir / "main.py").is_file() or version is None:
        raise LockError(
            f"{comfyui_dir} is not a ComfyUI tree (no main.py / comfyui_version.py); "
            "pass --comfyui DIR"
        )
    state = git_state(comfyui_dir)
    if state is not None:
        url, commit, dirty = state.url, state.commit, state.dirty
        if not url:
            raise LockError(
                f"{comfyui_dir} is a git checkout without a remote; add one (git remote add "
                "origin URL) so the lock can say where ComfyUI comes from"
            )
        if dirty:
            _problem(
                f"ComfyUI at {comfyui_dir} has local changes the lock does not capture",
                strict,
                "commit or stash them",
            )
        return ComfyUIInfo(version=version, source=GitSource(type="git", url=url, commit=commit))
    marker = read_marker(comfyui_dir)
    source = (marker or {}).get("source")
    if isinstance(source, dict):
        try:
            return ComfyUIInfo(version=version, source=to_lock(source))
        except LockError as e:
            raise LockError(f"{comfyui_dir / MARKER}: {e.message}") from e
    raise LockError(
        f"cannot tell where the ComfyUI at {comfyui_dir} came from: it is neither a git checkout nor "
        "installed by `comfypack comfyui install`. Use a git clone of ComfyUI or install one with "
        "`comfypack comfyui install`"
    )


def workflow_sha256(workflow: Mapping[str, Any]) -> str:
    """sha256 of the workflow's canonical JSON (sorted keys, compact, UTF-8)."""
    text = json.dumps(workflow, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# the lock


def create_lock(
    workflow_path: Path,
    comfyui_dir: Path,
    *,
    python: str | None = None,
    resolvers: list[Resolver] | None = None,
    hash_cache: HashCache | None = None,
    strict: bool = False,
    progress: bool = False,
    sources_cache: Path | None = None,
    allow_missing_models: bool = False,
    indexes: list[str] | None = None,
    fetch_archive_hashes: bool = True,
) -> Lock:
    """Lock the environment of ``workflow_path`` running on ``comfyui_dir`` (see the module doc).

    ``python``: the interpreter that runs ComfyUI (default: this one). ``resolvers``: where to
    look for model download sources, in order (default: the offline ones of
    :func:`comfypack.lock.sources.default_resolvers`). ``sources_cache``: the lookup cache (default
    ``$COMFYPACK_HOME/cache/sources.json``). ``hash_cache``: a stat-keyed cache of file hashes
    (default: in memory). ``strict``: what a restore elsewhere cannot reproduce is an error, not a
    warning — local changes in ComfyUI, a custom node commit that was never pushed, a remote or a
    package source only this machine reaches. A model file the workflow names that no model folder
    holds is an error (:class:`ModelsMissing`, exit 2) unless ``allow_missing_models``.
    ``indexes``: the package index URLs (default: :func:`index_urls` of ``python``).
    ``fetch_archive_hashes``: fetch a package archive whose installer recorded no hash, to pin it.
    """
    from .._version import __version__
    from ..workflow.interface import load_workflow

    workflow = load_workflow(workflow_path)
    comfyui_dir = Path(comfyui_dir)
    comfy = comfyui_info(comfyui_dir, strict=strict)

    absent = missing_models(workflow, comfyui_dir)
    if absent is not None:
        if not allow_missing_models:
            raise ModelsMissing(
                f"{absent.message} — or lock without them: --allow-missing-models",
                details=absent.details,
            )
        logger.warning("%s", absent.message)

    nodes = custom_nodes(comfyui_dir, strict=strict)

    python = python or sys.executable
    probe = _probe(python)
    py = PythonInfo(version=probe["version"], platform=probe["platform"])
    packages = _packages(probe, strict=strict, fetch_hashes=fetch_archive_hashes)

    found = find_models(workflow, comfyui_dir)
    cache = hash_cache if hash_cache is not None else HashCache(None)
    digests = hash_files([p for _, _, p in found], cache=cache, progress=progress)
    if hash_cache is not None:
        hash_cache.save()
    files = [
        ModelFile(
            folder=folder, path=rel, size=path.stat().st_size, sha256=digests[path], local_path=path
        )
        for folder, rel, path in found
    ]
    if resolvers is None:
        resolvers = default_resolvers(None, offline=True)
    sources = resolve_sources(files, resolvers, cache_path=sources_cache) if files else {}
    models = [
        Model(
            folder=f.folder,
            path=f.path,
            size=f.size,
            sha256=f.sha256,
            sources=list(sources.get(f.sha256, [])),
        )
        for f in files
    ]
    missing = [f"{m.folder}/{m.path}" for m in models if not m.sources]
    if missing:
        logger.warning(
            "no download source found for %s; a restore will need --sources FILE "
            "(sha256 or file name → URL)",
            ", ".join(missing),
        )

    return Lock(
        created_by=f"comfypack {__version__}",
        python=py,
        comfyui=comfy,
        custom_nodes=nodes,
        packages=packages,
        indexes=indexes if indexes is not None else index_urls(python),
        models=models,
        workflow=WorkflowInfo(sha256=workflow_sha256(workflow)),
    )


def missing_sources(lock: Lock) -> list[str]:
    """``folder/path`` of every locked model without a download source."""
    return [f"{m.folder}/{m.path}" for m in lock.models if not m.sources]
