#!/usr/bin/env bash
# Verify the systemd units of contrib/systemd with `systemd-analyze verify`.
#
#   scripts/check_systemd.sh [UNIT_FILE...]   # default: contrib/systemd/*.service
#
# Exit 0: every unit verifies with no complaint at all (a warning such as an
# unknown key or a bad value fails too); 1: a complaint (printed); 77:
# systemd-analyze is missing. The units name /opt/doozertw/venv/bin/twistd,
# which verify requires to be executable: they are verified in a throwaway
# root (--root) holding a stub at that path, the host's system units (for
# sysinit.target and friends), and the unit itself; a template is
# verified as its instance n1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v systemd-analyze >/dev/null || { echo "check_systemd: SKIP: no systemd-analyze" >&2; exit 77; }
units=("$@")
[ ${#units[@]} -gt 0 ] || units=("$ROOT"/contrib/systemd/*.service)

WORK=$(mktemp -d /tmp/doozer-systemd.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/opt/doozertw/venv/bin" "$WORK/etc/systemd/system" "$WORK/etc/doozer" \
    "$WORK/usr/lib/systemd"
printf '#!/bin/sh\nexit 0\n' >"$WORK/opt/doozertw/venv/bin/twistd"
chmod +x "$WORK/opt/doozertw/venv/bin/twistd"
for dir in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$dir" ]; then
        cp -r "$dir" "$WORK/usr/lib/systemd/"
        break
    fi
done

status=0
for unit in "${units[@]}"; do
    name=$(basename "$unit")
    cp "$unit" "$WORK/etc/systemd/system/$name"
    case $name in
        *@.service) name=${name%@.service}@n1.service ;;
    esac
    if ! out=$(systemd-analyze verify --man=no --root="$WORK" "$name" 2>&1) || [ -n "$out" ]; then
        echo "check_systemd: FAIL: $unit" >&2
        printf '%s\n' "$out" >&2
        status=1
    else
        echo "check_systemd: ok: $unit ($name)"
    fi
done
exit "$status"
