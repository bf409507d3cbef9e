"""The node interface the front ends use (doozertw.frontends.interface.NodeAPI):
every node conforms, and no front end reaches past it."""

import ast
import inspect
import pathlib

import pytest
from twisted.internet.task import Clock

import doozertw.frontends
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.frontends.interface import NodeAPI, NodeMetrics
from doozertw.node import Node
from doozertw.store import CLOBBER, Glob, Store

FRONTENDS = pathlib.Path(doozertw.frontends.__file__).parent
FORBIDDEN = ("doozertw.store", "doozertw.consensus", "doozertw.cluster", "doozertw.node")


def _declared_methods():
    return {name: member for name, member in vars(NodeAPI).items()
            if not name.startswith("_") and inspect.isfunction(member)}


def _signature_names(fn):
    return [p.name for p in inspect.signature(fn).parameters.values()]


def _member_node():
    return MemoryNetwork(Clock()).add("m1", ("m1",)).node


@pytest.mark.parametrize("make", [lambda: Node(), _member_node], ids=["alone", "member"])
def test_every_node_provides_the_interface(make):
    node = make()
    assert isinstance(node, NodeAPI)
    for name, declared in _declared_methods().items():
        assert _signature_names(getattr(type(node), name)) == _signature_names(declared), name
    assert isinstance(type(node).applied_rev, property)


def test_an_object_missing_a_method_does_not_provide_it():
    class Partial:
        name = cluster_name = "x"
        limits = None
        proposal_observers = []

        def rev(self):
            pass

    assert not isinstance(Partial(), NodeAPI)


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_front_ends_import_neither_the_store_nor_consensus():
    """Only the interface module itself names the store (to re-export its values)."""
    offenders = []
    for path in sorted(FRONTENDS.rglob("*.py")):
        if path.name == "interface.py":
            continue
        source = path.read_text()
        for module in _imports(ast.parse(source)):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(FRONTENDS)}: import {module}")
        for needle in ("node.store", "node.stats", "node.proposer"):
            if needle in source:
                offenders.append(f"{path.relative_to(FRONTENDS)}: {needle}")
    assert offenders == []


def test_metrics_count_reads_writes_and_connections():
    node = Node(store=Store(history=10))
    node.set("/a", CLOBBER, b"x")
    node.set("/a", 0, b"y").addErrback(lambda f: None)   # REV_MISMATCH: a write error
    node.get("/a")
    node.record_read()
    node.connection_opened()
    node.connection_opened()
    node.connection_closed()
    node.watch("/**", 1, lambda event: None)
    assert node.metrics() == NodeMetrics(rev=1, files=1, watchers=1, connections=1,
                                         reads=2, writes=2, write_errors=1)


def test_files_lists_matches_at_an_applied_revision():
    node = Node(store=Store(history=10))
    node.set("/d/a", CLOBBER, b"1")
    node.set("/d/b", CLOBBER, b"2")
    node.set("/d/a", CLOBBER, b"3")
    assert [(e.path, e.value) for e in node.files(Glob("/d/*"), 2)] == [
        ("/d/a", b"1"), ("/d/b", b"2")]
    assert [e.value for e in node.files(node.glob("/d/a"))] == [b"3"]
    assert node.applied_rev == 3


def test_when_applied_fires_at_the_revision_and_can_be_cancelled():
    node = Node()
    fired = []
    node.when_applied(0).addCallback(fired.append)
    assert fired == [None]
    later = node.when_applied(2).addCallback(fired.append)
    dropped = node.when_applied(2)
    dropped.addErrback(lambda f: fired.append("cancelled"))
    dropped.cancel()
    node.set("/a", CLOBBER, b"1")
    assert fired == [None, "cancelled"]
    node.set("/a", CLOBBER, b"2")
    assert fired == [None, "cancelled", None] and later.called
