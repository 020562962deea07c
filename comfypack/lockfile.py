"""The lock file ``comfypack.lock.json``: models, (de)serialisation and validation.

Modelled on PEP 751 (``pylock.toml``): a format version and the tool that wrote it; VCS sources
pinned to an immutable commit; every fetched file pinned by size and sha256; deterministic output
(sorted keys and lists, no timestamps) so the same environment gives the same bytes.

The JSON Schema shipped as ``comfypack/schemas/lock.schema.json`` is generated from these models
(``python -m comfypack.lockfile`` rewrites it; a unit test checks that it is current). Every read
and every write is validated against it with ``jsonschema``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import LockError

__all__ = [
    "LOCK_VERSION",
    "GitSource",
    "PackagedSource",
    "ArchiveSource",
    "TreeSource",
    "FileSource",
    "PatchInfo",
    "RegistryInfo",
    "ModelSource",
    "PythonInfo",
    "ComfyUIInfo",
    "CustomNode",
    "Package",
    "Model",
    "WorkflowInfo",
    "Lock",
    "dumps",
    "loads",
    "read_lock",
    "write_lock",
    "lock_schema",
    "requirement",
    "valid_package",
    "is_local_url",
    "check_sources",
    "COMFYPACK_NODES",
]

#: the name under which comfypack's own node package is recorded (and which restore skips:
#: comfypack itself provides it).
COMFYPACK_NODES = "comfypack_nodes"

#: The major format version this comfypack reads and writes.
LOCK_VERSION: Final = 1

_SHA256 = r"^[0-9a-f]{64}$"
_COMMIT = r"^[0-9a-f]{40}([0-9a-f]{24})?$"  # sha1 or sha256 object names
# One path component: not empty, not "." or "..", no separators.
_NAME = r"^(?!\.\.?$)[^/\\\x00]+$"
# A relative path with forward slashes: no leading "/", no drive, no "." / ".." / empty segment.
_RELPATH = r"^(?![A-Za-z]:)(?!.*(^|/)\.{0,2}(/|$))[^\\\x00]+$"
_URL = r"^https?://[^\s]+$"
# A model's download URL: http(s), or an object in an S3-compatible bucket (s3://bucket/key).
_MODEL_URL = r"^(?:https?://[^\s]+|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]+)$"
# A PEP 508 distribution name (what pip takes as a name: never an option, a URL or a marker).
_PKG_NAME = r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$"
# The characters of a PEP 440 version (the model checks the full grammar with `packaging`).
_PKG_VERSION = r"^v?[0-9][0-9A-Za-z.!+_-]{0,127}$"
# A git remote: https/ssh/git URLs, scp-like `user@host:path`, or (local: allowed only when
# asked) a file:// URL or an absolute path. Never an option (`-…`) or a transport helper
# (`ext::`, `fd::`): git must only ever see a URL.
_GIT_URL = (
    r"^(?:(?:https|ssh|git|git\+ssh|ssh\+git|file)://(?!-)[^\s]+"
    r"|[A-Za-z0-9._~][A-Za-z0-9._~-]*@[A-Za-z0-9][A-Za-z0-9.-]*:(?!-)[^\s:][^\s]*"
    r"|/[^\s]*)$"
)

Sha256 = Annotated[str, Field(pattern=_SHA256, description="lowercase hex sha256")]


def _pep440(value: str) -> str:
    from packaging.version import InvalidVersion, Version

    try:
        Version(value)
    except InvalidVersion as e:
        raise ValueError(f"{value!r} is not a PEP 440 version") from e
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, regex_engine="python-re")


class GitSource(_Model):
    """A git repository at an immutable commit."""

    type: Literal["git"] = "git"
    url: str = Field(
        pattern=_GIT_URL,
        max_length=2048,
        description="the remote it was cloned from: an https, ssh or git URL (file:// "
        "or a path: restored only when local sources are allowed)",
    )
    commit: str = Field(pattern=_COMMIT, description="full commit id")


class PackagedSource(_Model):
    """A ComfyUI tree carried inside a package on an index (a wheel), pinned by the wheel's hash."""

    type: Literal["packaged"] = "packaged"
    package: str = Field(pattern=_PKG_NAME, max_length=128, description="a PEP 508 package name")
    version: str = Field(pattern=_PKG_VERSION, description="a PEP 440 version")
    sha256: Sha256 = Field(description="sha256 of the wheel")

    @field_validator("version")
    @classmethod
    def _pep440_version(cls, v: str) -> str:
        return _pep440(v)

    tree: str = Field(pattern=_RELPATH, description="folder inside the wheel")


class ArchiveSource(_Model):
    """A release archive of the ComfyUI tree (``.tar.gz`` / ``.zip``), pinned by size and sha256."""

    type: Literal["archive"] = "archive"
    url: str = Field(
        pattern=r"^(https?|file)://[^\s]+$", description="http(s) URL, or file:// on this machine"
    )
    sha256: Sha256 = Field(description="sha256 of the archive")
    size: int = Field(ge=0, description="size of the archive in bytes")
    root: str = Field(
        default="",
        pattern=r"^([^/\\\x00.][^/\\\x00]*)?$",
        description="the archive's top folder (empty: a single top folder is stripped)",
    )


class TreeSource(_Model):
    """A folder that is not a git checkout, pinned by a content hash of its tree."""

    type: Literal["tree"] = "tree"
    sha256: Sha256


class FileSource(_Model):
    """A single-file custom node (``custom_nodes/NAME.py``), pinned by its sha256; the pack
    carries it."""

    type: Literal["file"] = "file"
    sha256: Sha256


class PatchInfo(_Model):
    """A git checkout's local changes, carried in the pack as ``patches/<name>.patch``."""

    sha256: Sha256 = Field(description="sha256 of the patch (git diff --binary --full-index)")
    size: int = Field(ge=1, description="size of the patch in bytes")


class RegistryInfo(_Model):
    """Where a node came from in the ComfyUI registry (recorded as information)."""

    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="the registry's node id"
    )
    version: str = Field(
        pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$", description="the node's version"
    )


class ModelSource(_Model):
    """Where a model file can be downloaded from."""

    type: Literal["huggingface", "civitai", "url", "s3"]
    url: str = Field(pattern=_MODEL_URL, description="a direct download URL, or s3://bucket/key")
    repo: str | None = Field(default=None, description="Hugging Face repo id (org/name)")
    revision: str | None = Field(default=None, description="Hugging Face commit")
    file: str | None = Field(default=None, description="path of the file in the repo")
    model_version_id: int | None = Field(default=None, ge=0, description="Civitai model version id")

    @field_validator("url")
    @classmethod
    def _scheme_matches_type(cls, url: str, info: Any) -> str:
        if (info.data.get("type") == "s3") != url.startswith("s3://"):
            raise ValueError("an s3:// URL is exactly a source of type s3")
        return url


class PythonInfo(_Model):
    version: str = Field(min_length=1, description="e.g. 3.11.7")
    platform: str = Field(min_length=1, description="e.g. linux-x86_64")


ComfyUISourceField = Annotated[
    GitSource | PackagedSource | ArchiveSource, Field(discriminator="type")
]
NodeSourceField = Annotated[GitSource | TreeSource | FileSource, Field(discriminator="type")]


class ComfyUIInfo(_Model):
    version: str | None = Field(default=None, description="ComfyUI's comfyui_version.py, if any")
    source: ComfyUISourceField


class CustomNode(_Model):
    name: str = Field(pattern=_NAME, description="its folder (or .py file) name in custom_nodes/")
    source: NodeSourceField
    dirty: bool = Field(default=False, description="the git work tree had uncommitted changes")
    patch: PatchInfo | None = Field(default=None, description="those changes, carried in the pack")
    registry: RegistryInfo | None = Field(
        default=None, description="ComfyUI registry id and version"
    )


# A direct reference's URL: an archive (http(s), or file:// on this machine) or a git URL, never
# an option, a space or a pip/uv requirement-file marker (";", " --hash", "#egg=" …).
_DIRECT_URL = (
    r"^(?:https?://|file://|git\+(?:https|ssh|git|file)://)[A-Za-z0-9._~:/?\[\]@!$&'()*+,=%-]+$"
)


class Package(_Model):
    name: str = Field(pattern=_PKG_NAME, max_length=128, description="a PEP 508 package name")
    version: str = Field(pattern=_PKG_VERSION, description="a PEP 440 version (installed exactly)")
    url: str | None = Field(
        default=None,
        pattern=_DIRECT_URL,
        max_length=2048,
        description="installed from this URL (PEP 610): an archive, or git+URL",
    )
    sha256: str | None = Field(default=None, pattern=_SHA256, description="the archive's sha256")
    commit: str | None = Field(
        default=None, pattern=_COMMIT, description="the VCS commit (git+URL)"
    )

    @field_validator("version")
    @classmethod
    def _pep440_version(cls, v: str) -> str:
        return _pep440(v)

    @property
    def requirement(self) -> str:
        """What the installer is given: ``name==version``, ``name @ url#sha256=…`` or
        ``name @ git+url@commit`` (checked again: see :func:`requirement`)."""
        return requirement(
            self.name, self.version, url=self.url, sha256=self.sha256, commit=self.commit
        )


def valid_package(name: str, version: str) -> bool:
    """Whether ``name==version`` is a plain PEP 508 name pinned to a PEP 440 version."""
    import re

    try:
        return (
            bool(re.match(_PKG_NAME, name))
            and bool(re.match(_PKG_VERSION, version))
            and _pep440(version) == version
        )
    except ValueError:
        return False


def requirement(
    name: str,
    version: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    commit: str | None = None,
) -> str:
    """The requirement the installer gets: ``name==version``, or for a direct reference
    ``name @ url`` (an archive with ``#sha256=`` when known; git at ``@commit``). Refused
    (:class:`LockError`) unless every part is valid — so pip and uv only ever see a pinned name or
    a plain URL, never an option, a marker or a second requirement."""
    import re

    if not valid_package(name, version):
        raise LockError(
            f"refusing package {name[:80]!r} version {version[:80]!r}: not a PEP 508 name "
            "with a PEP 440 version"
        )
    if url is None:
        return f"{name}=={version}"
    if not re.match(_DIRECT_URL, url) or "#" in url:
        raise LockError(
            f"refusing package {name}: its URL {url[:200]!r} is not a plain archive or git URL"
        )
    if url.startswith("git+"):
        if commit is None or not re.match(_COMMIT, commit) or "@" in urlsplit(url[4:]).path:
            raise LockError(
                f"refusing package {name}: a git URL needs its full commit ({url[:200]!r})"
            )
        return f"{name} @ {url}@{commit}"
    if sha256 is not None and not re.match(_SHA256, sha256):
        raise LockError(f"refusing package {name}: {sha256[:80]!r} is not a sha256")
    return f"{name} @ {url}" + (f"#sha256={sha256}" if sha256 else "")


def is_local_url(url: str) -> bool:
    """A ``file://`` URL or a path: a source on this machine (restored only when allowed)."""
    return (
        url.lower().startswith("file:")
        or url.startswith("/")
        or "://" not in url
        and "@" not in url
    )


class Model(_Model):
    folder: str = Field(pattern=_NAME, description="ComfyUI model folder, e.g. checkpoints")
    path: str = Field(pattern=_RELPATH, description="path inside that folder, '/'-separated")
    size: int = Field(ge=0)
    sha256: Sha256
    sources: list[ModelSource] = Field(
        default_factory=list, description="in order of preference; empty: none known"
    )


class WorkflowInfo(_Model):
    sha256: Sha256 = Field(description="sha256 of the API workflow as canonical JSON (sorted keys)")


class Lock(_Model):
    """``comfypack.lock.json``."""

    lock_version: Literal[1] = LOCK_VERSION
    created_by: str = Field(min_length=1, description="e.g. comfypack 0.1.0")
    python: PythonInfo
    comfyui: ComfyUIInfo
    custom_nodes: list[CustomNode] = Field(default_factory=list)
    packages: list[Package] = Field(default_factory=list)
    indexes: list[str] | None = Field(
        default=None,
        description="package index URLs the packages "
        "came from, the default index first (none: PyPI)",
    )
    models: list[Model] = Field(default_factory=list)
    workflow: WorkflowInfo

    @field_validator("indexes")
    @classmethod
    def _index_urls(cls, v: list[str] | None) -> list[str] | None:
        import re

        for url in v or []:
            if (
                not re.match(r"^(https?|file)://[A-Za-z0-9._~:/?\[\]@!$&'()*+,;=%-]+$", url)
                or len(url) > 2048
            ):
                raise ValueError(f"{url[:200]!r} is not an index URL")
        return v

    @field_validator("lock_version", mode="before")
    @classmethod
    def _not_a_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # True == 1 in Python; not in JSON Schema
            raise ValueError("lock_version must be an integer")
        return v


# -- JSON Schema ----------------------------------------------------------------------------


def _tighten(node: Any) -> None:
    """Every property written by :func:`dumps` is required (only ``None``-default ones may be
    absent: dumps leaves ``None`` out); no ``default`` noise in the file."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            node["required"] = [
                k
                for k, v in props.items()
                if not (isinstance(v, dict) and "default" in v and v["default"] is None)
            ]
            for v in props.values():
                if isinstance(v, dict):
                    v.pop("default", None)
        for v in node.values():
            _tighten(v)
    elif isinstance(node, list):
        for v in node:
            _tighten(v)


def lock_schema() -> dict[str, Any]:
    """The lock's JSON Schema, generated from the models (what the shipped file holds)."""
    schema = Lock.model_json_schema()
    _tighten(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "comfypack.lock.json",
        "description": f"comfypack lock file, lock_version {LOCK_VERSION}. Generated from "
        "comfypack.lockfile; regenerate with `python -m comfypack.lockfile`.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def _schema_text() -> str:
    return json.dumps(lock_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    text = (
        resources.files("comfypack")
        .joinpath("schemas/lock.schema.json")
        .read_text(encoding="utf-8")
    )
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate(data: Any, what: str) -> None:
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors[:10]:
            where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"{where}: {err.message}")
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise LockError(
            f"{what} does not match the lock schema: " + "; ".join(lines) + more, details=lines
        )


# -- (de)serialisation ----------------------------------------------------------------------


def _sorted_data(lock: Lock) -> dict[str, Any]:
    data = lock.model_dump(mode="json", exclude_none=True)
    data["custom_nodes"].sort(key=lambda n: n["name"])
    data["packages"].sort(key=lambda p: (p["name"].lower(), p["name"], p["version"]))
    data["models"].sort(key=lambda m: (m["folder"], m["path"]))
    return data


def dumps(lock: Lock) -> str:
    """The lock as deterministic JSON: sorted keys, custom nodes and packages by name, models by
    (folder, path), model sources in their order of preference, indent 2, trailing newline."""
    data = _sorted_data(lock)
    _validate(data, "the lock being written")
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def loads(text: str | bytes) -> Lock:
    """Parse and validate a lock. A lock from a newer comfypack (another ``lock_version``) is
    refused with a message that says to upgrade."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise LockError(f"the lock is not valid JSON: {e}") from e
    if isinstance(data, dict):
        version = data.get("lock_version")
        if isinstance(version, int) and not isinstance(version, bool) and version != LOCK_VERSION:
            if version > LOCK_VERSION:
                raise LockError(
                    f"this lock was written by a newer comfypack (lock_version {version}); this "
                    f"comfypack reads lock_version {LOCK_VERSION}. Upgrade comfypack "
                    "(pip install -U comfypack) to use it."
                )
            raise LockError(
                f"unsupported lock_version {version} (this comfypack reads {LOCK_VERSION})"
            )
    _validate(data, "the lock")
    try:
        return Lock.model_validate(data)
    except ValidationError as e:  # what the schema cannot say (a full PEP 440 version)
        lines = [f"{'/'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:10]]
        raise LockError(
            "the lock does not match the lock schema: " + "; ".join(lines), details=lines
        ) from None


def read_lock(path: Path) -> Lock:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise LockError(f"cannot read the lock {path}: {e.strerror or e}") from e
    try:
        return loads(text)
    except LockError as e:
        raise LockError(f"{path}: {e.message}", details=e.details) from e


def write_lock(lock: Lock, path: Path) -> None:
    """Write ``dumps(lock)`` to ``path`` atomically (a temp file in the same folder, renamed)."""
    from .atomic import atomic_write

    atomic_write(Path(path), dumps(lock))


def check_sources(lock: Lock, *, allow_local: bool = False) -> None:
    """Refuse (:class:`LockError`, exit 2) a lock whose sources pip, uv or git must not be given:
    package pins that are not ``name==version`` (PEP 508 / PEP 440) or a plain direct URL, index
    URLs that are not URLs, git remotes that are not https, ssh or git URLs, and — unless
    ``allow_local`` — ``file://`` URLs and paths (git remotes, package URLs and ComfyUI archives)
    that would read this machine's files. (A local package index is skipped, not refused: see
    :mod:`comfypack.pack.venv`.)"""
    for p in lock.packages:
        p.requirement  # noqa: B018 - raises LockError when invalid
    src = lock.comfyui.source
    if isinstance(src, PackagedSource):
        requirement(src.package, src.version)
    urls = [("ComfyUI", src.url)] if isinstance(src, (GitSource, ArchiveSource)) else []
    urls += [
        (f"custom node {n.name}", n.source.url)
        for n in lock.custom_nodes
        if isinstance(n.source, GitSource) and n.name != COMFYPACK_NODES
    ]
    urls += [(f"package {p.name}", p.url.removeprefix("git+")) for p in lock.packages if p.url]
    for what, url in urls:
        if url.startswith("-") or "::" in url.split("/", 1)[0]:
            raise LockError(f"the lock's {what} source {url[:200]!r} is not a URL; refusing it")
        if is_local_url(url) and not allow_local:
            raise LockError(
                f"the lock's {what} source {url[:200]!r} is on the local file system; "
                "restore it only from a pack you trust, with --allow-local-sources "
                "(COMFYPACK_ALLOW_LOCAL_SOURCES=1)"
            )


if __name__ == "__main__":  # regenerate the shipped schema
    target = Path(__file__).resolve().parent / "schemas" / "lock.schema.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(_schema_text(), encoding="utf-8")
    print(f"wrote {target}")
