#!/usr/bin/env bash
# Installs the Debian packages the platform and its tests use, only those missing.
set -euo pipefail
packages=(bubblewrap chromium espeak-ng docker.io slirp4netns qemu-system-x86 qemu-utils busybox-static)
packages+=(debootstrap docker-compose)  # the cluster images (deploy/base-image.sh) and the compose cluster
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
