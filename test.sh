#!/usr/bin/env bash
# Set up (once) and run the whole test suite against the installed package.
#   ./test.sh            default run (fast; excludes slow fault injection and soak)
#   ./test.sh --all      also the slow fault-injection runs
#   ./test.sh -m soak    the long soak, by hand
# Other arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check ".[test]"
"$here/scripts/system-deps.sh"
args=()
for a in "$@"; do
  if [ "$a" = "--all" ]; then args+=(-m "not soak"); else args+=("$a"); fi
done
exec "$venv/bin/python" -m pytest "${args[@]}"
