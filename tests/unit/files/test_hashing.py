"""comfypack.files.hashing: sha256 of files, in parallel, cached by (realpath, size, mtime_ns, inode)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from comfypack.files import hashing
from comfypack.files.hashing import HashCache, default_hash_cache, hash_files, sha256_file

OLD = time.time() - 3600  # files "last modified an hour ago", like installed model weights


def make(path: Path, data: bytes, *, old: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, (OLD, OLD))
    return path


@pytest.fixture
def count_reads(monkeypatch):
    """Count the files hash_files actually reads (and on which threads)."""
    calls: list[tuple[Path, str]] = []
    real = hashing.sha256_file

    def counting(path, **kw):
        calls.append((Path(path), threading.current_thread().name))
        return real(path, **kw)

    monkeypatch.setattr(hashing, "sha256_file", counting)
    return calls


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17])
def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path, size):
    data = os.urandom(size)
    path = make(tmp_path / "f", data)
    assert sha256_file(path, chunk=4096) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_sha256_file_reports_bytes(tmp_path):
    path = make(tmp_path / "f", b"x" * 10_000)
    seen: list[int] = []
    sha256_file(path, chunk=4096, on_bytes=seen.append)
    assert seen == [4096, 4096, 1808]


def test_hash_files_in_parallel_keyed_by_given_paths(tmp_path, count_reads):
    files = [make(tmp_path / f"m{i}.bin", os.urandom(50_000 + i)) for i in range(12)]
    result = hash_files(files, workers=4)
    assert result == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert len(count_reads) == 12
    assert {name for _, name in count_reads} <= {f"sha256_{i}" for i in range(4)}


def test_two_paths_to_one_file_are_read_once(tmp_path, count_reads):
    real = make(tmp_path / "real.bin", b"weights")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    result = hash_files([real, link])
    assert result[real] == result[link] == hashlib.sha256(b"weights").hexdigest()
    assert len(count_reads) == 1


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        hash_files([tmp_path / "nope.bin"])


def test_empty_input():
    assert hash_files([]) == {}


def test_cache_hit_reads_nothing_and_persists(tmp_path, count_reads):
    files = [make(tmp_path / f"m{i}.bin", os.urandom(1000)) for i in range(5)]
    cache_file = tmp_path / "cache" / "hashes.json"
    first = hash_files(files, cache=HashCache(cache_file))
    assert len(count_reads) == 5
    assert cache_file.is_file()

    count_reads.clear()
    again = hash_files(files, cache=HashCache(cache_file))  # a fresh process: read from disk
    assert again == first
    assert count_reads == []


def test_changed_file_is_hashed_again(tmp_path, count_reads):
    path = make(tmp_path / "m.bin", b"a" * 100)
    cache = HashCache(None)
    hash_files([path], cache=cache)
    # same size, different content and mtime
    make(path, b"b" * 100)
    os.utime(path, (OLD + 10, OLD + 10))
    count_reads.clear()
    assert hash_files([path], cache=cache)[path] == hashlib.sha256(b"b" * 100).hexdigest()
    assert len(count_reads) == 1


def test_cache_key_includes_size_mtime_and_inode(tmp_path):
    path = make(tmp_path / "m.bin", b"abc")
    cache = HashCache(None)
    cache.put(path, "0" * 64)
    assert cache.get(path) == "0" * 64
    assert cache.get(tmp_path / "other.bin") is None

    os.utime(path, (OLD + 1, OLD + 1))  # mtime
    assert cache.get(path) is None
    cache.put(path, "1" * 64)

    replacement = make(tmp_path / "new.bin", b"abc")  # same bytes and mtime, another inode
    os.utime(replacement, (OLD + 1, OLD + 1))
    os.replace(replacement, path)
    assert cache.get(path) is None


def test_a_write_that_puts_the_old_mtime_back_is_noticed(tmp_path):
    """Same size, same mtime (os.utime after writing), same inode: only the ctime tells (issue 13)."""
    path = make(tmp_path / "m.bin", b"abc")
    cache = HashCache(None)
    cache.put(path, "0" * 64)
    st = path.stat()
    with open(path, "r+b") as f:  # damage in place
        f.write(b"x")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )
    assert cache.get(path) is None


def test_symlink_shares_the_real_files_entry(tmp_path):
    real = make(tmp_path / "real.bin", b"abc")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    cache = HashCache(None)
    cache.put(real, "2" * 64)
    assert cache.get(link) == "2" * 64


def test_just_modified_file_is_not_cached(tmp_path):
    """A write in the same timestamp tick as the hash would go unnoticed ("racy clean")."""
    fresh = make(tmp_path / "fresh.bin", b"new", old=False)
    cache = HashCache(None)
    cache.put(fresh, "3" * 64)
    assert cache.get(fresh) is None
    assert len(cache) == 0


def test_save_is_atomic_json_and_merges_other_writers(tmp_path):
    a = make(tmp_path / "a.bin", b"a")
    b = make(tmp_path / "b.bin", b"b")
    cache_file = tmp_path / "hashes.json"
    one, two = HashCache(cache_file), HashCache(cache_file)
    one.put(a, "a" * 64)
    two.put(b, "b" * 64)
    one.save()
    two.save()
    data = json.loads(cache_file.read_text())
    assert data["version"] == 2
    assert {v["sha256"] for v in data["entries"].values()} == {"a" * 64, "b" * 64}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.bin",
        "b.bin",
        "hashes.json",
    ]  # no temp files
    fresh = HashCache(cache_file)
    assert fresh.get(a) == "a" * 64 and fresh.get(b) == "b" * 64


def test_corrupt_cache_file_is_ignored_with_a_warning(tmp_path, caplog):
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="comfypack.files.hashing"):
        cache = HashCache(cache_file)
    assert len(cache) == 0
    assert "hash cache" in caplog.text
    path = make(tmp_path / "m.bin", b"m")
    hash_files([path], cache=cache)
    assert json.loads(cache_file.read_text())["version"] == 2  # rewritten, usable again


def test_unknown_cache_version_starts_empty(tmp_path):
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text(json.dumps({"version": 99, "entries": {"x": {"sha256": "y"}}}))
    assert len(HashCache(cache_file)) == 0


def test_in_memory_cache_writes_nothing(tmp_path):
    cache = HashCache(None)
    cache.put(make(tmp_path / "m.bin", b"m"), "4" * 64)
    cache.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]


def test_default_cache_lives_in_comfypack_home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYPACK_HOME", str(tmp_path / "home"))
    assert default_hash_cache().path == tmp_path / "home" / "cache" / "hashes.json"


def test_progress_bar_true_and_shared_progress(tmp_path):
    from rich.console import Console
    from rich.progress import Progress

    files = [make(tmp_path / f"m{i}.bin", os.urandom(3000)) for i in range(3)]
    expected = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert hash_files(files, progress=True) == expected
    assert hashing._shared["users"] == 0 and hashing._shared["progress"] is None

    with Progress(console=Console(file=io.StringIO())) as prog:
        assert hash_files(files, progress=prog) == expected
        (task,) = prog.tasks
        assert task.completed == task.total == 9000
