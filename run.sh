#!/usr/bin/env bash
# Set up (once) and start a local doozertw node in the foreground:
#   client port 127.0.0.1:8046 (doozer and text protocols), web view http://localhost:8000,
#   durable: its data lives in doozer-data/<name>/ inside this checkout.
# Extra arguments go to `twistd doozer` (see `./run.sh --help`). Once it listens
# the node logs "node n1 serving: client port ..., web view ...".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "run.sh: first start: installing doozertw into .venv (about a minute)" >&2
  python3 -m venv "$venv"
fi
(cd "$here" && "$venv/bin/pip" install --quiet --disable-pip-version-check . \
  2> >(grep -v "is ignored: it is neither" >&2))
default=(--data-dir "$here/doozer-data/{name}")
for a in "$@"; do
  case "$a" in --data-dir|--data-dir=*|-d|--in-memory) default=() ;; esac
done
exec "$venv/bin/twistd" --nodaemon --pidfile= doozer "${default[@]}" "$@"
