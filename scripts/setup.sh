#!/usr/bin/env bash
# Install everything fleetpy needs on Debian 12 (run as root). Safe to run again:
# it installs only what is missing and re-installs the venv only when
# pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (the lab needs namespaces, bridges and cgroups): sudo $0" >&2
    exit 1
fi

PKGS=(etcd-server etcd-client libsystemd-dev pkg-config dbus iproute2 systemd
      openssh-server openssh-client openssl sudo nginx curl procps psmisc gcc
      python3-dev python3-venv chromium chromium-driver)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    # Without systemd as PID 1, package scripts would start machine-wide daemons
    # (sshd on :22, nginx on :80, etcd) through /etc/init.d: forbid that for
    # the install. The lab starts its own daemons inside its hosts.
    policy=/usr/sbin/policy-rc.d
    had_policy=0; [ -e "$policy" ] && had_policy=1
    if [ $had_policy = 0 ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $had_policy = 0 ] && rm -f "$policy" && trap - EXIT
fi

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' 2>/dev/null || {
    echo "setup: Python >= 3.11 is needed ($PY is $("$PY" --version 2>&1))" >&2; exit 1; }

stamp=.venv/.fleetpy-installed
want=$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating .venv and installing fleetpy with its dev tools"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
    # compat mode: a plain .pth path entry instead of an import hook, which
    # costs every fleetctl run ~15 ms of start-up.
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' \
        --config-settings editable_mode=compat
    echo "$want" > "$stamp"
fi
echo "setup: ok ($(.venv/bin/python --version), etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'))"
