#!/usr/bin/env bash
# The whole test suite: set-up included (Debian packages, venv), then lint,
# type checks and every test (unit, contract on a real etcd, lab end-to-end on
# real systemd hosts). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== ruff";  .venv/bin/ruff check fleetpy tests bench
echo "== mypy";  .venv/bin/mypy fleetpy
echo "== pytest"
exec .venv/bin/pytest "$@"
