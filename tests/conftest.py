"""Shared fixtures: a node on a fake clock, and StringTransport plumbing."""

import pytest
from twisted.internet.task import Clock

from doozertw.node import Node
from doozertw.store import Store


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def node():
    return Node(name="test-node", store=Store(history=100))
