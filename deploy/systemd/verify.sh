#!/usr/bin/env bash
# Verifies deploy/systemd/gateway.service with `systemd-analyze verify`, in a throwaway root directory so that
# nothing is installed on this machine: the root holds the unit, the system's own units (the targets it names) and
# a stand-in for /usr/local/bin/gateway (verify checks that ExecStart is executable).
#
# Exit 0: verified, no complaint. Exit 1: systemd found a problem in the unit (printed). Exit 2: systemd-analyze
# cannot verify anything here (missing, or it fails on a trivial unit too), so the unit was NOT verified: the
# caller must say so loudly.
set -uo pipefail
cd "$(dirname "$0")"
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is not installed" >&2; exit 2; }
system_units=/usr/lib/systemd/system
[ -d "$system_units" ] || { echo "no $system_units to verify against" >&2; exit 2; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/gateway"
chmod 0755 "$root/usr/local/bin/gateway"
cp -r "$system_units" "$root/usr/lib/systemd/system"

verify() {  # $1: unit name inside the root; prints what systemd said
    systemd-analyze verify --root="$root" --man=no "$1" 2>&1
}

# A trivial unit first: if even that does not verify, the tool does not work in this environment.
printf '[Service]\nExecStart=/usr/local/bin/gateway\n' >"$root/etc/systemd/system/probe.service"
if ! probe=$(verify probe.service) || [ -n "$probe" ]; then
    echo "systemd-analyze verify does not work here: $probe" >&2
    exit 2
fi
cp gateway.service "$root/etc/systemd/system/gateway.service"
out=$(verify gateway.service)
status=$?
# systemd only warns about most mistakes (an unknown value is "ignoring"): any output is a failure.
if [ "$status" != 0 ] || [ -n "$out" ]; then
    echo "deploy/systemd/gateway.service does not verify (systemd-analyze exit $status):" >&2
    echo "$out" >&2
    exit 1
fi
echo "deploy/systemd/gateway.service verified with $(systemd-analyze --version | head -n1)"
