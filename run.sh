#!/usr/bin/env bash
# Set up (once) and start a local doozertw node in the foreground:
#   client port 127.0.0.1:8046 (doozer and text protocols), web view http://localhost:8000
# Extra arguments go to `twistd doozer` (see `./run.sh --help`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
(cd "$here" && "$venv/bin/pip" install --quiet --disable-pip-version-check .)
exec "$venv/bin/twistd" --nodaemon --pidfile= doozer "$@"
