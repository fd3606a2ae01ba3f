#!/bin/sh
# Boots the machine's systemd as PID 1 of new PID, mount, cgroup, UTS and IPC namespaces (and a new
# network namespace with --new-net), inside cgroup CGROUP of its own, for tests of the systemd cgroup
# driver on machines whose PID 1 is not systemd.
#
#   boot-systemd.sh [--new-net] DIR CGROUP
#   boot-systemd.sh --stop CGROUP
#
# DIR gets the only units systemd may load (SYSTEMD_UNIT_PATH holds nothing else): a target and the
# system bus. None of the distribution's boot services run, and they must not: they act on the
# machine's filesystems (systemd-tmpfiles-setup empties /tmp). The bus is then at
# /proc/<PID 1>/root/run/dbus/system_bus_socket; PID 1 is this script's child. `--stop CGROUP` kills
# every process in CGROUP (PID 1 first, which takes its namespaces with it) and removes the cgroups.
set -eu
if [ "${1:-}" = --stop ]; then
    cg=$2
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(cat /sys/fs/cgroup/"$cg"/cgroup.procs /sys/fs/cgroup/*/"$cg"/cgroup.procs \
            $(find /sys/fs/cgroup -path "*/$cg/*" -name cgroup.procs 2>/dev/null) 2>/dev/null | sort -un)
        [ -n "$pids" ] || break
        kill -9 $pids 2>/dev/null || true
        sleep 0.3
    done
    for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
        [ -d "$h/$cg" ] && find "$h/$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    exit 0
fi
net=
if [ "${1:-}" = --new-net ]; then net=--net; shift; fi
units=$1
cg=$2
mkdir -p "$units"
printf '[Unit]\nDescription=ferrokube test\nWants=dbus.socket dbus.service\n' >"$units/ferrokube.target"
printf '[Unit]\nDescription=System Slice\nDefaultDependencies=no\n' >"$units/system.slice"
printf '[Unit]\nDefaultDependencies=no\n[Socket]\nListenStream=/run/dbus/system_bus_socket\n' >"$units/dbus.socket"
printf '[Unit]\nDefaultDependencies=no\nRequires=dbus.socket\n[Service]\nExecStart=/usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile --systemd-activation --syslog-only\n' >"$units/dbus.service"

# Into a cgroup of our own in every hierarchy, so that systemd's tree lands under it (cpuset needs
# its cpus and mems before it takes a process).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p "/sys/fs/cgroup/$cg"
    echo $$ >"/sys/fs/cgroup/$cg/cgroup.procs"
else
    for h in /sys/fs/cgroup/*/; do
        [ -f "${h}cgroup.procs" ] || continue
        mkdir -p "$h$cg"
        for f in cpuset.cpus cpuset.mems; do
            if [ -f "$h$f" ]; then cat "$h$f" >"$h$cg/$f"; fi
        done
        echo $$ >"$h$cg/cgroup.procs"
    done
fi

# In the new namespaces the cgroup hierarchies are mounted again, so that their roots are the new
# cgroup namespace's (CGROUP) as systemd expects.
exec unshare --cgroup --pid --fork --mount --uts --ipc $net --mount-proc /bin/sh -c '
    set -eu
    units=$0
    mount --make-rprivate /
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        umount -l /sys/fs/cgroup
        mount -t cgroup2 cgroup2 /sys/fs/cgroup
    else
        awk "\$3 == \"cgroup\" { print \$2, \$4 } \$3 == \"cgroup2\" { print \$2, \"-\" }" /proc/self/mounts >"$units/cgroup-mounts"
        umount -l /sys/fs/cgroup
        mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
        while read -r dir opts; do
            mkdir -p "$dir"
            if [ "$opts" = - ]; then
                mount -t cgroup2 cgroup2 "$dir"
            else
                mount -t cgroup -o "$opts" cgroup "$dir"
            fi
        done <"$units/cgroup-mounts"
    fi
    exec env container=ferrokube SYSTEMD_UNIT_PATH="$units" /lib/systemd/systemd --unit=ferrokube.target --log-target=console --show-status=no
' "$units"
