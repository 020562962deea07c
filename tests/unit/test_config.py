"""comfypack.config: every COMFYPACK_* variable the code reads is in config.ENVIRONMENT, and the
README's Settings table lists each one (a new setting without docs fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from comfypack.config import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
#: names that look like settings but are not environment variables
NOT_SETTINGS = {"COMFYPACK_NODES", "COMFYPACK_PAYLOAD__"}


def _names_in_source() -> set[str]:
    names: set[str] = set()
    for folder in ("comfypack", "custom_nodes/comfypack_nodes", "service"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sh", ".tmpl", ".js") and "__pycache__" not in path.parts:
                text = path.read_text(encoding="utf-8")
                if path == ROOT / "comfypack" / "config.py":  # the table itself is not a reader
                    text = text.split("ENVIRONMENT: dict", 1)[0]
                names |= set(re.findall(r"COMFYPACK_[A-Z0-9_]+", text))
    # prefixes in prose ("COMFYPACK_S3_*") are not names
    return {n for n in names if not n.endswith("_")} - NOT_SETTINGS


def test_every_variable_the_code_reads_is_in_the_table():
    missing = sorted(_names_in_source() - set(ENVIRONMENT))
    assert missing == [], f"add these to comfypack.config.ENVIRONMENT: {missing}"


def test_the_table_names_only_variables_the_code_reads():
    unused = sorted(set(ENVIRONMENT) - _names_in_source())
    assert unused == [], f"not read anywhere any more: {unused}"


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = (
        readme.split("## Settings", 1)[1].split("\n## ", 1)[0] if "## Settings" in readme else ""
    )
    missing = [name for name in ENVIRONMENT if f"`{name}`" not in section]
    assert missing == [], f"the README's Settings section lacks: {missing}"


def test_the_readme_architecture_names_every_module():
    """The README's Architecture section is the map of the tree: every package has a row
    (``| `comfypack/<package>/` | …``) that names each of its modules."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split("`", 2)[1]: line
        for line in section.splitlines()
        if line.startswith("| `comfypack/") and line.split("`", 2)[1].endswith("/")
    }
    missing = []
    for path in sorted((ROOT / "comfypack").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "_custom_nodes" in rel.parts or path.name in ("__init__.py", "__main__.py"):
            continue
        row = rows.get(rel.parent.as_posix() + "/", "")
        if f"`{path.name}`" not in row:
            missing.append(rel.as_posix())
    assert missing == [], f"the README's Architecture section does not name: {missing}"
    stale = [
        f"{folder}{name}"
        for folder, row in rows.items()
        for name in re.findall(r"`([a-z_0-9]+\.py)`", row)
        if not (ROOT / folder / name).is_file()
    ]
    assert stale == [], f"the README's Architecture section names modules that are gone: {stale}"
