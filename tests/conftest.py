"""Shared fixtures (a node, a fake clock); the suite's plugins: pytester,
and ``doozertw.testing.hermetic``, which fails any test that starts a
process without an ``e2e``/``slow``/``soak`` marker; the hypothesis example
cap under scripts/mutation.sh. Shared helpers live in ``doozertw.testing``:
a test module never imports another ``test_*.py``."""

import os

import pytest
from hypothesis import settings as hypothesis_settings
from twisted.internet.task import Clock

from doozertw.node import Node
from doozertw.store import Store

pytest_plugins = ("pytester", "doozertw.testing.hermetic")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def node():
    return Node(name="test-node", store=Store(history=100))


# scripts/mutation.sh runs the judged tests once per mutant: there, every
# hypothesis test runs at most MUTATION_EXAMPLES examples.
MUTATION_EXAMPLES = 25


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("DOOZER_MUTATION"):
        return
    for item in items:
        test = getattr(item, "obj", None)
        if hasattr(test, "_hypothesis_internal_use_settings"):
            test._hypothesis_internal_use_settings = _capped(
                test._hypothesis_internal_use_settings)
        machine = getattr(item, "cls", None)
        if isinstance(getattr(machine, "settings", None), hypothesis_settings):
            machine.settings = _capped(machine.settings)


def _capped(given: hypothesis_settings) -> hypothesis_settings:
    return hypothesis_settings(given, max_examples=min(given.max_examples, MUTATION_EXAMPLES))
