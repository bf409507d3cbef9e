#!/usr/bin/env bash
# Set up (once) and run the whole test suite against the installed package.
#   ./test.sh            everything but the long soak: the hermetic tests, the
#                        e2e tests (real twistd, CLI and browser processes) and
#                        the slow fault-injection runs (about 11 minutes on 2 cores, two workers)
#   ./test.sh --fast     the quick hermetic developer run, pytest's default
#                        selection: no e2e, slow or soak test, no process started
#   ./test.sh -m e2e     one marker's tests alone (e2e, slow, or soak: the long
#                        soak, by hand)
# Other arguments go to pytest. Every run starts with the lint gate: ruff and
# mypy as pyproject.toml configures them; a finding fails the run.
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
"$venv/bin/ruff" check --quiet doozertw tests scripts twisted examples ||
  { echo "test.sh: ruff check failed (the findings are above)" >&2; exit 1; }
"$venv/bin/python" -m mypy --no-error-summary ||
  { echo "test.sh: mypy failed (the findings are above)" >&2; exit 1; }
# two workers (DOOZER_TEST_WORKERS=0: one process): the e2e and fault runs
# mostly wait on their nodes, so two halve the wall time on 2 cores
workers=(-n "${DOOZER_TEST_WORKERS:-2}")
[ "${DOOZER_TEST_WORKERS:-2}" = 0 ] && workers=()
exec "$venv/bin/python" -m pytest "${workers[@]}" "${args[@]}"
