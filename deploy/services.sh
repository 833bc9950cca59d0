#!/usr/bin/env bash
# Starts the local services the tests talk to, when they are installed but not running.
set -uo pipefail
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
bash "$(dirname "$0")/docker-engine.sh"
exit 0
