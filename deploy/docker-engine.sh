#!/usr/bin/env bash
# Starts a Docker engine for the container runtime when dockerd is installed and none answers.
# Machines without systemd (CI, containers) get it in the background: vfs storage works on any
# filesystem, and iptables is left alone since jobs run with network "none" unless granted.
set -uo pipefail
command -v dockerd >/dev/null 2>&1 || exit 0
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then echo "docker-engine: not root, not starting dockerd" >&2; exit 0; fi
log_dir="${CXMPUTE_HOME:-$HOME/.cxmpute}/logs"
mkdir -p "$log_dir"
nohup dockerd --storage-driver=vfs --iptables=false --ip6tables=false \
  >"$log_dir/dockerd.log" 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "docker-engine: dockerd did not answer within 30 s, see $log_dir/dockerd.log" >&2
exit 0
