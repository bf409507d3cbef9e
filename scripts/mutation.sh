#!/usr/bin/env bash
# Mutation testing of the pure cores, the durable storage and the read path.
#
#   scripts/mutation.sh TARGET [mutmut run options]
#
# TARGET is one of: store, consensus, persist, reads, leases.  The script copies the
# checkout to .mutation/TARGET/, writes mutmut's configuration for that
# target (which files to mutate, which tests judge them), runs mutmut there
# and prints the score with scripts/mutation_report.py.  A rerun resumes
# where the last one stopped; delete .mutation/TARGET to start over.
#
# It is slow (tens of minutes a target on 2 cores), so it is not part of
# ./test.sh; docs/testing.md records the last scores and every survivor.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:?usage: scripts/mutation.sh store|consensus|persist|reads|leases [mutmut options]}"
shift
case "$target" in
  store)
    mutate='"doozertw/store/"'
    tests='"tests/test_store.py", "tests/test_store_hostile.py", "tests/test_store_model.py", "tests/test_store_snapshot.py", "tests/test_paths.py", "tests/test_store_leases.py"' ;;
  consensus)
    mutate='"doozertw/consensus/"'
    # the seeded chaos runs (test_raft_sim.py) are left out: a minute each
    # surviving mutant; the targeted sim scenarios judge instead
    tests='"tests/test_raft_rules.py", "tests/test_raft_guards.py", "tests/test_raft_api.py", "tests/test_raft_log.py", "tests/test_raft_codec.py", "tests/test_raft_hostile.py", "tests/test_raft_mutants.py", "tests/test_raft_storage_rebuild.py", "tests/test_sim_rules.py", "tests/test_sim_storage_rebuild.py", "tests/test_raft_lease.py", "tests/test_sim_lease.py"' ;;
  persist)
    mutate='"doozertw/persist/wal.py", "doozertw/persist/storage.py", "doozertw/persist/snapfile.py"'
    tests='"tests/test_persist_storage.py", "tests/test_persist_recovery.py", "tests/test_persist_model.py", "tests/test_persist_fs.py", "tests/test_persist_mutants.py", "tests/test_sim_storage_rebuild.py"' ;;
  reads)
    mutate='"doozertw/cluster/reads.py", "doozertw/cluster/proposer.py"'
    tests='"tests/test_cluster_proposer.py", "tests/test_cluster_reads.py", "tests/test_cluster_memory.py", "tests/test_cluster_regressions.py", "tests/test_sim_memnet_reads.py", "tests/test_cluster_driver.py", "tests/test_cluster_faults.py", "tests/test_cluster_durable.py"' ;;
  leases)
    mutate='"doozertw/store/leases.py", "doozertw/store/txn.py", "doozertw/store/mutation.py", "doozertw/cluster/lessor.py", "doozertw/cluster/lease_forward.py"'
    tests='"tests/test_store_leases.py", "tests/test_lessor.py", "tests/test_lease_forward.py", "tests/test_cluster_leases.py", "tests/test_store_model.py", "tests/test_store.py", "tests/test_node.py"' ;;
  *) echo "unknown target: $target" >&2; exit 2 ;;
esac

venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# MUTATION_NO_INSTALL=1: the venv already has doozertw's test and mutation extras
[ -n "${MUTATION_NO_INSTALL:-}" ] || "$venv/bin/pip" install --quiet --disable-pip-version-check "$here[test,mutation]" \
  2> >(grep -v "is ignored: it is neither" >&2)

work="$here/.mutation/$target"
mkdir -p "$work"
# Fresh sources each run; mutmut's own results (mutants/) are kept to resume.
find "$work" -mindepth 1 -maxdepth 1 ! -name mutants -exec rm -rf {} +
tar -C "$here" -c --exclude=./.venv --exclude=./.mutation --exclude=./.git \
  --exclude=./doozer-data --exclude=./build --exclude='*.egg-info' \
  --exclude=__pycache__ . | tar -C "$work" -x
cat >> "$work/pyproject.toml" <<EOF

[tool.mutmut]
paths_to_mutate = [$mutate]
pytest_add_cli_args_test_selection = [$tests]
# mutmut runs pytest many times in one process: the reactor cannot restart,
# and the judged tests are the pure ones that need no reactor.
pytest_add_cli_args = ["-p", "no:twisted", "-p", "no:cacheprovider", "-m", "not e2e and not slow and not soak", "-x", "-q"]
also_copy = ["doozertw/", "twisted/", "web/", "pytest.ini", "tests/"]
EOF
cd "$work"
export DOOZER_MUTATION=1   # hypothesis tests run fewer examples (tests/conftest.py)
"$venv/bin/mutmut" run "$@" || true
"$venv/bin/python" "$here/scripts/mutation_report.py" "$work/mutants" \
  --equivalent "$here/docs/mutation-equivalent.txt"
