"""The layout holds: stage packages in layers, no import circles, no module over 600 lines, every
import a declared dependency (README "Architecture").

The contract checks run the very commands ``make lint`` runs (read from ``make -n lint``): on the
real tree they pass; on a copy of the tree with one import going up a layer, or one circle, they
fail and name the import — so a change that breaks the layers cannot pass ``make lint``.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "comfypack"
MAX_LINES = 600


def _lint_command(tool: str) -> list[str]:
    """The line of ``make lint`` that runs ``tool`` (``lint-imports``, ``deptry``)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed: the lint recipe cannot be read")
    out = subprocess.run(
        ["make", "-n", "lint"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = [shlex.split(ln) for ln in out.splitlines() if ln.strip()]
    found = [ln for ln in lines if Path(ln[0]).name == tool]
    assert found, f"`make lint` does not run {tool}:\n{out}"
    cmd = found[0]
    return [str(ROOT / cmd[0]) if not Path(cmd[0]).is_absolute() else cmd[0], *cmd[1:]]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd), NO_COLOR="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def _copy_tree(tmp_path: Path) -> Path:
    """The package and its pyproject.toml (the contracts) in ``tmp_path``: importable from there."""
    shutil.copytree(PACKAGE, tmp_path / "comfypack", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_no_module_is_over_600_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines (split them by concern): {long}"


def test_the_tree_keeps_the_layers_and_has_no_circles():
    proc = _run(_lint_command("lint-imports"), ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "a stage imports only the stages below it KEPT" in proc.stdout
    assert "no import circles between the modules of a package KEPT" in proc.stdout


def test_an_import_that_goes_up_a_layer_fails_lint(tmp_path):
    tree = _copy_tree(tmp_path)
    # files/ is below serve/: a helper of the ground floor reaching for the job table
    _append(tree / "comfypack" / "files" / "hashing.py", "from ..serve import jobs  # noqa")
    proc = _run(_lint_command("lint-imports"), tree)
    assert proc.returncode != 0, proc.stdout
    assert "a stage imports only the stages below it BROKEN" in proc.stdout
    assert "comfypack.files.hashing -> comfypack.serve.jobs" in proc.stdout


def test_an_import_circle_fails_lint(tmp_path):
    tree = _copy_tree(tmp_path)
    # serve/engine.py imports serve/storage.py; the way back closes a circle inside one stage
    _append(tree / "comfypack" / "serve" / "storage.py", "from . import engine  # noqa")
    proc = _run(_lint_command("lint-imports"), tree)
    assert proc.returncode != 0, proc.stdout
    assert "no import circles between the modules of a package BROKEN" in proc.stdout
    assert "comfypack.serve" in proc.stdout and "- .storage -> .engine" in proc.stdout


def test_every_import_is_declared():
    proc = _run(_lint_command("deptry"), ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_undeclared_import_fails_lint(tmp_path):
    tree = _copy_tree(tmp_path)
    # requests is installed (a dependency of a dependency) but comfypack does not declare it
    _append(tree / "comfypack" / "files" / "download.py", "import requests  # noqa")
    proc = _run(_lint_command("deptry"), tree)
    assert proc.returncode != 0, proc.stdout
    assert "'requests' imported but it is a transitive dependency" in proc.stdout + proc.stderr


def test_no_face_hides_a_module_of_its_package():
    """A package face must not re-export a name that is also one of its modules: the module
    ``comfypack.pack.verify`` would become unreachable as ``comfypack.pack.verify`` (the
    attribute would be the function), and patches aimed at it would hit the wrong object."""
    clashes = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        pkg = ".".join(init.parent.relative_to(ROOT).parts)
        module = importlib.import_module(pkg)
        for name in getattr(module, "__all__", []):
            if (init.parent / f"{name}.py").is_file() or (init.parent / name).is_dir():
                clashes.append(f"{pkg}.{name}")
    assert clashes == []


#: dotted names that are not modules: logger names, an ASGI scope key, the wheel-only node package
NOT_MODULES = {"comfypack.service", "comfypack.routes", "comfypack.form"}
_DOTTED = re.compile(r"\bcomfypack(?:\.[A-Za-z_][A-Za-z_0-9]*)+")
_FILE_SUFFIXES = (".json", ".zip", ".py", ".js", ".css", ".yaml", ".svg", ".tmpl")


def _resolves(ref: str) -> bool:
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_comfypack_name_in_the_tree_exists():
    """Docstrings, comments, strings and the README name modules and objects by their dotted
    path; after a move each must still resolve (a stale name sends a reader to nothing)."""
    files = [
        p
        for d in ("comfypack", "tests", "scripts", "bench", "service")
        for p in (ROOT / d).rglob("*.py")
    ]
    files += [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    files += list((ROOT / "custom_nodes" / "comfypack_nodes").glob("*.py"))
    stale: dict[str, str] = {}
    for path in files:
        for match in _DOTTED.finditer(path.read_text(encoding="utf-8")):
            ref = match.group(0).rstrip(".")
            if (
                ref in NOT_MODULES
                or ref.startswith("comfypack._custom_nodes")
                or ref.endswith(_FILE_SUFFIXES)
                or ".lock.json" in ref
                or "__main__" in ref  # importing it runs the CLI
                or "bento_service" in ref  # importing it builds the service from the environment
            ):
                continue
            if not _resolves(ref):
                stale.setdefault(ref, str(path.relative_to(ROOT)))
    assert stale == {}, f"names that do not exist (where first seen): {stale}"


LAZY_FACES = ["files", "workflow", "comfyui", "lock", "pack", "serve", "serve.v2", "ship"]


@pytest.mark.parametrize("package", LAZY_FACES)
def test_a_face_imports_none_of_its_modules(package):
    """Importing a stage's face (what importing any one of its modules does first) loads none of
    its other modules: start-up pays only for what it uses."""
    import subprocess
    import sys

    name = f"comfypack.{package}"
    # what the root package itself loads (it re-exports the Interface and the schema) is not the
    # face's doing
    code = (
        "import sys, comfypack; before = set(sys.modules); "
        f"import {name} as face; "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith(face.__name__ + '.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    assert out == "[]", f"importing {name} loaded {out}"
