#!/usr/bin/env bash
# Make the base image `comfypack containerize` builds on, locally, without pulling anything:
# a minimal Debian root file system (mmdebstrap, from the Debian mirrors this host's apt already
# uses) with Python 3.11, venv, git and CA certificates, committed with buildah as
#
#     $COMFYPACK_BASE_IMAGE   (default localhost/comfypack-base:bookworm-py3.11)
#
# Repeatable: an existing image is kept (FORCE=1 makes it again). As root, buildah and
# mmdebstrap are installed with apt-get when missing. Storage: buildah's vfs driver (no overlay
# needed), BUILDAH_STORAGE_DRIVER to change it.
set -euo pipefail

IMAGE="${COMFYPACK_BASE_IMAGE:-localhost/comfypack-base:bookworm-py3.11}"
SUITE="${COMFYPACK_BASE_SUITE:-bookworm}"
DRIVER="${BUILDAH_STORAGE_DRIVER:-vfs}"
PACKAGES="python3.11,python3.11-venv,ca-certificates,git,tini"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "base-image needs ${missing[*]}: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

B=(buildah --storage-driver "$DRIVER")
if [ "${FORCE:-0}" != 1 ] && "${B[@]}" inspect --type image "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE already exists (FORCE=1 to make it again)"
  exit 0
fi

# the Debian sources this host uses (deb822 or one-line form), so no address is written here
sources=$(mktemp)
ctr=""
cleanup() {
  rm -f "$sources"
  if [ -n "$ctr" ]; then "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
cat /etc/apt/sources.list.d/*.sources 2>/dev/null > "$sources" || true
if [ ! -s "$sources" ]; then
  grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null > "$sources" || true
fi
if [ ! -s "$sources" ]; then
  echo "no Debian sources found in /etc/apt (sources.list or sources.list.d/*.sources)" >&2
  exit 1
fi

start=$(date +%s)
ctr=$("${B[@]}" from scratch)
root=$("${B[@]}" mount "$ctr")
log "mmdebstrap $SUITE ($PACKAGES) into $root"
mmdebstrap --variant=minbase --include="$PACKAGES" --mode=root \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' "$SUITE" "$root" "$sources"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*
"${B[@]}" umount "$ctr" >/dev/null
"${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --env PYTHONUNBUFFERED=1 --cmd /bin/sh \
  --label org.opencontainers.image.title=comfypack-base \
  --label org.opencontainers.image.description="Debian $SUITE minbase with Python 3.11 (made by scripts/base_image.sh)" \
  "$ctr"
"${B[@]}" commit --rm --format oci "$ctr" "$IMAGE" >/dev/null
ctr=""
log "$IMAGE made in $(( $(date +%s) - start )) s ($("${B[@]}" inspect --type image --format '{{.Docker.Size}}' "$IMAGE" 2>/dev/null || echo '?') bytes)"
