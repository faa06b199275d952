#!/usr/bin/env bash
# The main job: set up, boot the lab (3 etcd members infra1..3, hosts
# core-01..03 each running systemd and fleetd), show the cluster, and start the
# walkthrough's hello.service on it. Run as root on Debian 12; safe to re-run
# (an already running lab is reused). `fleetlab down` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

if fleetlab status >/dev/null 2>&1; then
    echo "demo: the lab is already up; reusing it"
else
    fleetlab up
fi
eval "$(fleetlab env)"

hosts=$(fleetlab status | awk '$1 ~ /^core-/ {n++} END {print n+0}')
for _ in $(seq 100); do
    machines=$(fleetctl list-machines --no-legend 2>/dev/null | wc -l || true)
    [ "$machines" -ge "$hosts" ] && break
    sleep 0.1
done

run() { printf '\n$ %s\n' "$*"; "$@"; }
run fleetlab status
run fleetctl list-machines
run fleetctl start unit-files/static/hello.service
run fleetctl list-unit-files
run fleetctl list-units
machine=$(fleetctl list-units --no-legend --fields=unit,machine | awk '$1 == "hello.service" {print $2}')
host=$(fleetlab status | awk -v ip="${machine#*/}" '$3 == ip {print $1}')
sleep 1.5
run fleetlab exec "$host" -- journalctl -u hello.service --no-pager -n 3

cat <<MSG

The lab keeps running. Next:
  eval "\$(.venv/bin/fleetlab env)"    # fleetctl and etcdctl here now talk to the lab
  fleetctl stop hello.service; fleetctl destroy hello.service
  fleetlab shell core-01               # fleetctl works inside the hosts too
  fleetlab down                        # stop everything
MSG
