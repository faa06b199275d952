"""The shell script that turns a forked process into a lab host's PID 1.

It is kept as a string (not a package data file) so that any install of fleetpy
carries it. ``hosts.start_host`` writes it into the host's state directory and
runs it, already in the host's cgroups, as ``unshare --pid --fork --mount
--uts --net --cgroup --mount-proc sh SCRIPT``; every parameter comes in
``FLH_*`` variables.

As PID 1 of the new pid namespace it isolates the filesystem as the lab notes
say (private /run, /tmp, /var/tmp, empty unit ``.wants`` and generator dirs,
fresh cgroup and sysfs mounts, a private /dev, per-host
machine-id/hostname/environment/hosts, the lab's passwd/shadow/group/sudoers.d
from ``$FLH_HOSTDIR/etc`` and home directories from ``$FLH_HOSTDIR/home``),
configures eth0 once the lab has moved the veth in, then ``exec``s systemd.

FLH_CGMOUNTS   mounts to recreate under /sys/fs/cgroup, in order, each
               ``dir:kind:options``: kind ``tmpfs`` (over /sys/fs/cgroup),
               ``cgroup`` (v1, with options), ``cgroup2``, or ``link`` (a
               symlink to options); ``.:cgroup2:-`` on a pure cgroup2 machine
FLH_HOSTDIR    the host's state directory (identity files, ``system/`` units)
FLH_KEEP       colon-separated paths to keep visible under the private mounts
FLH_NAME       host name; FLH_IP, FLH_PREFIX, FLH_GW its address and gateway
FLH_SYSTEMD    systemd binary; FLH_TARGET the unit it boots; FLH_CONTAINER
               the value of ``container=``
"""

SCRIPT = r"""#!/bin/sh
set -eu
log() { echo "fleetlab-init[$FLH_NAME]: $*" >&2; }

mount --make-rprivate /

# Identity: every host would otherwise share the machine's files.
for f in machine-id hostname environment hosts; do
    mount --bind "$FLH_HOSTDIR/$f" "/etc/$f"
done
hostname "$FLH_NAME"
# Users and sudo rules of the lab (a `core` user exists only inside hosts).
for f in "$FLH_HOSTDIR"/etc/*; do
    if [ -e "$f" ] && [ -e "/etc/${f##*/}" ]; then mount --bind "$f" "/etc/${f##*/}"; fi
done

# Units: only the lab's own; the machine's enabled units and generators hidden.
mount -t tmpfs -o mode=755 tmpfs /etc/systemd/system
cp -R "$FLH_HOSTDIR/system/." /etc/systemd/system/
for d in $(realpath /lib/systemd/system/*.wants /lib/systemd/system-generators | sort -u); do
    mount -t tmpfs -o mode=755,ro tmpfs "$d"
done

# Private scratch space, keeping the checkout and venv visible at their paths.
private() {  # private DIR MODE
    [ -d "$1" ] || return 0
    exec 9<"$1"
    mount -t tmpfs -o "mode=$2" tmpfs "$1"
    old_ifs=$IFS; IFS=:
    for k in $FLH_KEEP; do
        case "$k" in
        "$1"/*) mkdir -p "$k"; mount --no-canonicalize --rbind "/proc/self/fd/9/${k#"$1"/}" "$k" ;;
        esac
    done
    IFS=$old_ifs
    exec 9<&-
}
private /run 755
private /tmp 1777
private /var/tmp 1777
journal=0; [ -d /var/log/journal ] && journal=1
private /var/log 755  # sshd writes wtmp and lastlog there
# The journal, readable by group systemd-journal as on Debian (journald keeps
# it in /run: nothing asks it to flush to /var/log/journal).
mkdir -p /run/log/journal
if [ $journal = 1 ]; then mkdir /var/log/journal; fi
chmod 2755 /run/log/journal /var/log/journal 2>/dev/null || true
chgrp systemd-journal /run/log/journal /var/log/journal 2>/dev/null || true
private /home 755
private /root 711  # the machine's root home stays out; a kept Python under it stays in
if [ -d "$FLH_HOSTDIR/home" ]; then cp -a "$FLH_HOSTDIR/home/." /home/; fi

# A private /dev: what runs in a host must not touch the machine's (/dev/log).
exec 9</dev
mount -t tmpfs -o mode=755,nosuid tmpfs /dev
for n in null zero full random urandom tty; do
    touch "/dev/$n"
    mount --no-canonicalize --bind "/proc/self/fd/9/$n" "/dev/$n"
done
exec 9<&-
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr

# sysfs for this net namespace, and fresh cgroup mounts rooted at this host.
mount -t sysfs sysfs /sys
for spec in $FLH_CGMOUNTS; do
    dir=${spec%%:*}; rest=${spec#*:}; kind=${rest%%:*}; opts=${rest#*:}
    case "$kind" in
    cgroup2)
        mkdir -p "/sys/fs/cgroup/$dir"
        mount -t cgroup2 cgroup2 "/sys/fs/cgroup/$dir" ;;
    link)
        ln -s "$opts" "/sys/fs/cgroup/$dir" ;;
    cgroup)
        mkdir -p "/sys/fs/cgroup/$dir"
        mount -t cgroup -o "$opts" cgroup "/sys/fs/cgroup/$dir" ;;
    tmpfs)
        mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup ;;
    esac
done

# Network: the lab moves a veth named eth0 into this namespace.
ip link set lo up
n=0
until ip link show eth0 >/dev/null 2>&1; do
    n=$((n + 1))
    if [ $n -gt 1000 ]; then log "eth0 never arrived"; exit 1; fi
    sleep 0.01
done
ip addr add "$FLH_IP/$FLH_PREFIX" dev eth0
ip link set eth0 up
ip route add default via "$FLH_GW"

log "booting $FLH_SYSTEMD --unit=$FLH_TARGET"
exec env -i container="$FLH_CONTAINER" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "$FLH_SYSTEMD" --unit="$FLH_TARGET" </dev/null
"""
