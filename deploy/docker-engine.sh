#!/usr/bin/env bash
# Starts a Docker engine for the container runtime when dockerd is installed and none answers.
# Machines without systemd (CI, containers) get it in the background, with iptables left alone since jobs
# run with network "none" unless granted. The storage driver is dockerd's own choice: overlay2 where the
# filesystem under /var/lib/docker carries it (containers share their image's layers), vfs elsewhere (every
# layer and container a full copy: the compose cluster then takes tens of GB).
set -uo pipefail
command -v dockerd >/dev/null 2>&1 || exit 0
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then echo "docker-engine: not root, not starting dockerd" >&2; exit 0; fi
log_dir="${CXMPUTE_HOME:-$HOME/.cxmpute}/logs"
mkdir -p "$log_dir"
# dockerd keeps the driver its data root was made with: a root an engine filled with vfs stays vfs until
# it is emptied by its owner (docker system prune -a, or a new data root).
nohup dockerd --iptables=false --ip6tables=false >"$log_dir/dockerd.log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker-engine: dockerd started, storage driver $(docker info --format '{{.Driver}}')" >&2
    exit 0
  fi
  sleep 0.5
done
echo "docker-engine: dockerd did not answer within 30 s, see $log_dir/dockerd.log" >&2
exit 0
