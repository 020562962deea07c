#!/usr/bin/env bash
# `make test`: every suite on the default ComfyUI (the one `make setup` provisions), then the suites
# that run a real ComfyUI (integration, e2e, browser) on the current ComfyUI line, each from the
# venv that holds the requirements that ComfyUI pins. The current line is set up by `make setup`
# only where its release archive is present (CI has it); otherwise this says so and runs the
# default only. `make lint` runs first. Fails when lint or any test fails. Extra arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
export COMFYPACK_REQUIRE_COMFYUI=1
CURRENT_ARCHIVE="${COMFYPACK_CURRENT_ARCHIVE:-../shared/fixtures/ComfyUI-0.28.2.tar.gz}"
CURRENT_PY=.cache/current/venv/bin/python
status=0

version() { "$1" -c 'from comfypack.config import default_comfyui_dir as d; from comfypack.comfyui.source import comfyui_version as v; print(v(d()))' 2>/dev/null; }

echo "== lint: ruff (lint, format) over the tree, mypy over what ships, the stage layers (import-linter), declared imports (deptry)"
make --no-print-directory lint || status=1

echo "== ComfyUI $(version .venv/bin/python) (default): unit, integration, e2e, browser"
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@" || status=1

if [ -f "$CURRENT_ARCHIVE" ]; then
  if [ ! -x "$CURRENT_PY" ]; then
    echo "error: $CURRENT_ARCHIVE is present but the current-line venv is not set up: run make setup" >&2
    exit 1
  fi
  echo "== ComfyUI $(version "$CURRENT_PY") (current line): integration, e2e, browser"
  "$CURRENT_PY" -m pytest -q -p no:cacheprovider tests/integration tests/e2e tests/browser "$@" || status=1
else
  echo "note: $CURRENT_ARCHIVE is absent: tested on the default ComfyUI only"
fi
exit $status
