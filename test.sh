#!/usr/bin/env bash
# Set up (once) and run the whole test suite against the installed package.
#   ./test.sh            everything but the long soak (fault-injection runs
#                        included; about 6 minutes on 2 cores)
#   ./test.sh --fast     the quick developer run (pytest's default selection:
#                        no slow fault-injection runs)
#   ./test.sh -m soak    the long soak, by hand
# Other arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check ".[test]" 2> >(grep -v "is ignored: it is neither" >&2)
"$here/scripts/system-deps.sh"
args=(-m "not soak")
for a in "$@"; do
  case "$a" in
    --fast) args=() ;;
    -m) args=() ; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
exec "$venv/bin/python" -m pytest "${args[@]}"
