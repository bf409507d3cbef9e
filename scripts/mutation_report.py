"""Print the mutation score of a mutmut run, per file, and its survivors.

Usage: ``python scripts/mutation_report.py MUTANTS_DIR [--equivalent FILE]``

MUTANTS_DIR is the ``mutants/`` directory a ``mutmut run`` left behind.  The
equivalent-mutants file lists, one per line, ``<mutant name>  <reason>``
(``#`` starts a comment): mutants that no test can kill because they do not
change behaviour.  The score is killed / (all checked - equivalent).  The
exit status is 1 when a survivor is neither killed nor explained.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

_KILLED = {1, 3, 37}
_SURVIVED = {0}
_NO_TESTS = {5, 33}
_TIMEOUT = {24, -24, 36, 152, 255}


def classify(exit_code: int | None) -> str:
    """The outcome of one mutant from mutmut's recorded pytest exit code."""
    if exit_code is None:
        return "unchecked"
    if exit_code in _KILLED or exit_code in _TIMEOUT:
        return "killed"
    if exit_code in _SURVIVED:
        return "survived"
    if exit_code in _NO_TESTS:
        return "no-tests"
    return "suspicious"


def read_equivalent(path: Path | None) -> dict[str, str]:
    """Mutant name -> reason, from the equivalent-mutants file (may be absent)."""
    if path is None or not path.exists():
        return {}
    reasons = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, reason = line.partition(" ")
            reasons[name] = reason.strip()
    return reasons


def outcomes(mutants: Path) -> dict[str, dict[str, str]]:
    """Source file -> {mutant name: outcome} for every ``.meta`` file."""
    found = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        source = str(meta.relative_to(mutants))[: -len(".meta")]
        found[source] = {name: classify(code) for name, code in codes.items()}
    return found


def report(mutants: Path, equivalent: dict[str, str]) -> int:
    unexplained = []
    total = Counter()
    print(f"{'file':44} {'mutants':>7} {'killed':>7} {'equiv':>6} {'left':>5} {'score':>7}")
    for source, results in outcomes(mutants).items():
        if not results:
            continue
        counts = Counter()
        for name, outcome in results.items():
            if outcome in ("survived", "no-tests", "suspicious") and name in equivalent:
                outcome = "equivalent"
            counts[outcome] += 1
            if outcome in ("survived", "no-tests", "suspicious"):
                unexplained.append((name, outcome))
        total.update(counts)
        print(_row(source, counts))
    print(_row("all", total))
    for name, outcome in unexplained:
        print(f"  {outcome:10} {name}")
    return 1 if unexplained else 0


def _row(label: str, counts: Counter) -> str:
    checked = sum(counts.values()) - counts["unchecked"]
    judged = checked - counts["equivalent"]
    left = judged - counts["killed"]
    score = f"{100 * counts['killed'] / judged:.1f}%" if judged else "-"
    return (f"{label:44} {sum(counts.values()):7} {counts['killed']:7} "
            f"{counts['equivalent']:6} {left:5} {score:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mutants", type=Path)
    parser.add_argument("--equivalent", type=Path)
    args = parser.parse_args()
    return report(args.mutants, read_equivalent(args.equivalent))


if __name__ == "__main__":
    sys.exit(main())
