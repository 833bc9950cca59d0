#!/usr/bin/env bash
# Builds cxmpute/base:bookworm, the image every cluster image starts FROM, without any image registry:
# a minimal Debian bookworm root filesystem made by debootstrap from the Debian mirror, imported with
# `docker import`. Idempotent: an engine that has the tag keeps it, and the root filesystem tarball is
# cached (CXMPUTE_CACHE_DIR, default ~/.cache/cxmpute) so a fresh engine imports it again in seconds.
#   bash deploy/base-image.sh            # build if missing
#   bash deploy/base-image.sh --rebuild  # debootstrap again (new Debian point release)
set -euo pipefail
TAG="${CXMPUTE_BASE_IMAGE:-cxmpute/base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${CXMPUTE_CACHE_DIR:-$HOME/.cache/cxmpute}"
ROOTFS_TAR="$CACHE/base-bookworm.tar"
# Python for the platform and the tools every image needs at run time; the rest comes per Dockerfile.
INCLUDE="python3,python3-venv,ca-certificates"

rebuild=0
[ "${1:-}" = "--rebuild" ] && rebuild=1
if [ "$rebuild" -eq 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$CACHE"
if [ "$rebuild" -eq 1 ] || [ ! -s "$ROOTFS_TAR" ]; then
  command -v debootstrap >/dev/null || { echo "base-image: debootstrap is missing (bash deploy/system-deps.sh)" >&2; exit 1; }
  work="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "base-image: debootstrap bookworm into $work"
  debootstrap --variant=minbase --include="$INCLUDE" bookworm "$work" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }
  # Images are layers: no package lists, caches, docs or man pages in them.
  rm -rf "$work"/var/lib/apt/lists/* "$work"/var/cache/apt/*.bin "$work"/var/cache/apt/archives/*.deb \
    "$work"/usr/share/doc/* "$work"/usr/share/man/* "$work"/usr/share/info/* "$work"/usr/share/locale/*
  # Trust what the building host trusts: behind a TLS-intercepting proxy, pip in an image build needs its CA.
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$work/usr/local/share/ca-certificates/build-host.crt"
    chroot "$work" update-ca-certificates >/dev/null 2>&1
  fi
  cat >"$work/etc/apt/apt.conf.d/90cxmpute-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
  cat >"$work/etc/dpkg/dpkg.cfg.d/90cxmpute-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  chmod 0755 "$work"  # mktemp made it 0700: it becomes the image's / and every user must traverse it
  tar -C "$work" --numeric-owner -cf "$ROOTFS_TAR.part" .
  mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
fi
docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  "$ROOTFS_TAR" "$TAG" >/dev/null
echo "base-image: $TAG ($(du -h "$ROOTFS_TAR" | cut -f1) root filesystem)"
