"""The Node: every verb through Deferreds, waiting reads, wait/watch, limits, /ctl."""

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from doozertw import __version__
from doozertw.errors import DoozerError, ErrCode
from doozertw.limits import Limits
from doozertw.node import LocalProposer, Node, compile_glob
from doozertw.store import DEL, DIR, SET, DeleteFile, Event, Nop, SetFile, Store
from doozertw.testing.proposers import HeldProposer


def result_of(d):
    """The result of a Deferred that must already have succeeded."""
    box = []
    d.addBoth(lambda r: (box.append(r), r)[1])
    assert box, "Deferred has not fired"
    if isinstance(box[0], Failure):
        d.addErrback(lambda _: None)
        box[0].raiseException()
    return box[0]


def failure_of(d, *types):
    """The Failure of a Deferred that must already have failed with ``types``."""
    box = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    assert isinstance(box[0], Failure), f"expected a failure, got {box[0]!r}"
    assert box[0].check(*types), box[0]
    return box[0]


def code_of(d):
    return failure_of(d, DoozerError).value.code


def pending(d):
    box = []
    d.addBoth(lambda r: (box.append(r), r)[1])
    return not box


@pytest.fixture
def small():
    return Node(name="n1", store=Store(history=3))


# -- basic verbs ---------------------------------------------------------------

def test_set_get_stat_delete(node):
    assert result_of(node.rev()) == 0
    assert result_of(node.self_id()) == "test-node"
    assert result_of(node.set("/a/b", 0, b"hello")) == 1
    assert result_of(node.get("/a/b")) == (b"hello", 1)
    assert result_of(node.stat("/a/b")) == (5, 1)
    assert result_of(node.stat("/a")) == (1, DIR)
    assert result_of(node.getdir("/a")) == "b"
    assert result_of(node.walk("/**")) == Event(1, "/a/b", b"hello", SET)
    assert result_of(node.delete("/a/b", 1)) == 2
    assert result_of(node.get("/a/b")) == (b"", 0)
    assert result_of(node.rev()) == 2
    assert node.stats.writes == 2 and node.stats.reads == 6


def test_set_accepts_bytes_like_values(node):
    assert result_of(node.set("/a", -1, bytearray(b"xy"))) == 1
    assert result_of(node.get("/a")) == (b"xy", 1)
    assert type(node.store.get("/a")[0]) is bytes


def test_write_errors_fail_the_deferred(node):
    result_of(node.set("/a", 0, b"1"))
    assert code_of(node.set("/a", 0, b"2")) == ErrCode.REV_MISMATCH
    assert code_of(node.delete("/a", 0)) == ErrCode.REV_MISMATCH
    assert code_of(node.set("/a/b", -1, b"")) == ErrCode.NOTDIR
    result_of(node.set("/d/x", -1, b""))
    assert code_of(node.set("/d", -1, b"")) == ErrCode.ISDIR
    assert code_of(node.delete("/d", -1)) == ErrCode.ISDIR
    assert code_of(node.set("bad", -1, b"")) == ErrCode.BAD_PATH
    assert code_of(node.delete("/bad/", -1)) == ErrCode.BAD_PATH
    assert node.stats.write_errors == 5
    assert result_of(node.rev()) == 2


def test_read_errors_fail_the_deferred(node):
    result_of(node.set("/a", -1, b"1"))
    assert code_of(node.get("/")) == ErrCode.ISDIR
    assert code_of(node.getdir("/a")) == ErrCode.NOTDIR
    assert code_of(node.getdir("/x")) == ErrCode.NOENT
    assert code_of(node.getdir("/", offset=1)) == ErrCode.RANGE
    assert code_of(node.walk("/**", offset=1)) == ErrCode.RANGE
    assert code_of(node.walk("/a b")) == ErrCode.BAD_PATH
    assert code_of(node.get("nope")) == ErrCode.BAD_PATH


def test_reads_at_past_revisions_and_too_late(small):
    for i in range(6):
        result_of(small.set("/a", -1, str(i).encode()))
    assert result_of(small.get("/a", 3)) == (b"2", 3)
    assert code_of(small.get("/a", 2)) == ErrCode.TOO_LATE
    assert code_of(small.stat("/a", 1)) == ErrCode.TOO_LATE
    assert code_of(small.walk("/**", 0)) == ErrCode.TOO_LATE
    assert code_of(small.getdir("/", 2)) == ErrCode.TOO_LATE


def test_nop_goes_through_the_proposer(node):
    assert result_of(node.nop()) is None
    assert result_of(node.rev()) == 0


# -- reads pinned to a future revision -------------------------------------------

def test_read_at_future_revision_waits_for_it(node):
    d_get = node.get("/a", 3)
    d_stat = node.stat("/a", 2)
    d_dir = node.getdir("/", 3, 1)
    d_walk = node.walk("/*", 3, 1)
    d_err = node.getdir("/a", 3)
    assert all(pending(d) for d in (d_get, d_stat, d_dir, d_walk, d_err))
    result_of(node.set("/a", -1, b"1"))
    assert pending(d_get) and pending(d_stat)
    result_of(node.set("/a", -1, b"2"))
    assert result_of(d_stat) == (1, 2)
    assert pending(d_get)
    result_of(node.set("/b", -1, b"3"))
    assert result_of(d_get) == (b"2", 2)
    assert result_of(d_dir) == "b"
    assert result_of(d_walk) == Event(3, "/b", b"3", SET)
    assert code_of(d_err) == ErrCode.NOTDIR


def test_read_waits_are_not_fired_by_failed_writes(node):
    d = node.get("/a", 1)
    result_of(node.set("/a", -1, b"x"))
    d2 = node.get("/a", 2)
    failure_of(node.set("/a", 0, b"y"), DoozerError)
    assert pending(d2)
    assert result_of(d) == (b"x", 1)


def test_cancelled_waiting_read_is_harmless(node):
    d = node.get("/a", 1)
    d.cancel()
    failure_of(d, defer.CancelledError)
    result_of(node.set("/a", -1, b"x"))   # the waiter fires into a called Deferred


def test_read_at_current_revision_is_immediate(node):
    result_of(node.set("/a", -1, b"x"))
    assert result_of(node.get("/a", 1)) == (b"x", 1)
    assert result_of(node.get("/a", 0)) == (b"", 0)


# -- wait ------------------------------------------------------------------------

def test_wait_from_past_revision_fires_at_once_with_first_match(node):
    result_of(node.set("/a", -1, b"1"))
    result_of(node.set("/b", -1, b"2"))
    result_of(node.set("/b", -1, b"3"))
    assert result_of(node.wait("/b", 1)) == Event(2, "/b", b"2", SET)
    assert result_of(node.wait("/b", 3)) == Event(3, "/b", b"3", SET)
    assert result_of(node.wait("/**", 0)) == Event(1, "/a", b"1", SET)
    assert node.store.watch_count == 0


def test_wait_for_a_future_change(node):
    result_of(node.set("/x", -1, b"0"))
    d = node.wait("/a/*", 2)
    assert pending(d) and node.store.watch_count == 1
    result_of(node.set("/x", -1, b"1"))
    result_of(node.set("/a/b/c", -1, b"deep"))
    assert pending(d)
    result_of(node.delete("/x", -1))
    result_of(node.set("/a/y", -1, b"hit"))
    assert result_of(d) == Event(5, "/a/y", b"hit", SET)
    assert node.store.watch_count == 0
    result_of(node.set("/a/y", -1, b"again"))


def test_wait_reports_deletes(node):
    result_of(node.set("/a", -1, b"1"))
    d = node.wait("/a", 2)
    result_of(node.delete("/a", -1))
    event = result_of(d)
    assert event == Event(2, "/a", b"", DEL) and not event.is_set


def test_wait_cancel_removes_the_watch(node):
    d = node.wait("/**", 1)
    assert node.store.watch_count == 1
    d.cancel()
    failure_of(d, defer.CancelledError)
    assert node.store.watch_count == 0
    result_of(node.set("/a", -1, b""))


def test_wait_errors(small):
    for _ in range(5):
        result_of(small.set("/a", -1, b""))
    assert code_of(small.wait("/a", 2)) == ErrCode.TOO_LATE
    assert code_of(small.wait("/a b", 5)) == ErrCode.BAD_PATH
    assert result_of(small.wait("/a", 3)).rev == 3
    assert small.store.watch_count == 0


def test_wait_from_future_revision_ignores_earlier_changes(node):
    d = node.wait("/a", 3)
    result_of(node.set("/a", -1, b"1"))
    result_of(node.set("/a", -1, b"2"))
    assert pending(d)
    result_of(node.set("/a", -1, b"3"))
    assert result_of(d).rev == 3


# -- watch (streaming) -------------------------------------------------------------

def test_watch_streams_until_cancelled(node):
    result_of(node.set("/a", -1, b"1"))
    seen = []
    w = node.watch("/a", 1, seen.append)
    result_of(node.set("/b", -1, b"x"))
    result_of(node.set("/a", -1, b"2"))
    result_of(node.delete("/a", -1))
    assert [(e.rev, e.kind) for e in seen] == [(1, SET), (3, SET), (4, DEL)]
    w.cancel()
    assert node.store.watch_count == 0
    result_of(node.set("/a", -1, b"3"))
    assert len(seen) == 3


def test_watch_errors_raise(small):
    with pytest.raises(DoozerError) as e:
        small.watch("/a/", 1, lambda ev: None)
    assert e.value.code == ErrCode.BAD_PATH
    for _ in range(5):
        result_of(small.set("/a", -1, b""))
    with pytest.raises(DoozerError) as e:
        small.watch("/**", 1, lambda ev: None)
    assert e.value.code == ErrCode.TOO_LATE
    assert small.store.watch_count == 0


def test_write_from_watch_callback_keeps_revision_order(node):
    seen = []

    def echo(event):
        if event.path == "/a":
            node.set("/b", -1, b"echo")

    node.watch("/a", 1, echo)
    node.watch("/**", 1, lambda e: seen.append(e.rev))
    result_of(node.set("/a", -1, b"x"))
    assert seen == [1, 2]


# -- limits -------------------------------------------------------------------------

def test_value_and_path_limits():
    node = Node(limits=Limits(max_value=4, max_path=6))
    assert result_of(node.set("/a", -1, b"1234")) == 1
    assert code_of(node.set("/a", -1, b"12345")) == ErrCode.OTHER
    assert result_of(node.set("/abcde", -1, b"")) == 2
    assert code_of(node.set("/abcdef", -1, b"")) == ErrCode.BAD_PATH
    assert code_of(node.delete("/abcdef", -1)) == ErrCode.BAD_PATH
    assert result_of(node.delete("/abcde", -1)) == 3
    assert result_of(node.get("/a")) == (b"1234", 1)


def test_default_limits():
    node = Node()
    assert node.limits == Limits()
    big = b"x" * node.limits.max_value
    assert result_of(node.set("/big", -1, big)) == 1
    assert code_of(node.set("/big", -1, big + b"x")) == ErrCode.OTHER
    long_path = "/" + "p" * (node.limits.max_path - 1)
    assert result_of(node.set(long_path, -1, b"")) == 2
    assert code_of(node.set(long_path + "p", -1, b"")) == ErrCode.BAD_PATH


# -- proposer ------------------------------------------------------------------------

def test_writes_complete_when_the_proposer_commits():
    store = Store()
    proposer = HeldProposer(store)
    node = Node(store=store, proposer=proposer)
    d1 = node.set("/a", 0, b"x")
    d2 = node.set("/a", 0, b"y")
    d3 = node.nop()
    assert pending(d1) and pending(d2) and pending(d3)
    assert [m for m, _ in proposer.held] == [
        SetFile("/a", 0, b"x"), SetFile("/a", 0, b"y"), Nop()]
    proposer.release()
    assert result_of(d1) == 1
    proposer.release()
    assert code_of(d2) == ErrCode.REV_MISMATCH
    proposer.release()
    assert result_of(d3) is None
    node.delete("/a", -1)
    assert proposer.held[0][0] == DeleteFile("/a", -1)


def test_local_proposer_applies_at_once():
    store = Store()
    out = result_of(LocalProposer(store).propose(SetFile("/a", -1, b"")))
    assert out.rev == 1 and store.rev == 1


# -- /ctl self-description --------------------------------------------------------------

def test_describe_self_writes_ctl_entries():
    node = Node(name="n7", cluster_name="prod")
    result_of(node.describe_self("127.0.0.1:8046", hostname="host-1"))
    assert result_of(node.get("/ctl/name"))[0] == b"prod"
    assert result_of(node.get("/ctl/node/n7/addr"))[0] == b"127.0.0.1:8046"
    assert result_of(node.get("/ctl/node/n7/hostname"))[0] == b"host-1"
    assert result_of(node.get("/ctl/node/n7/version"))[0] == __version__.encode()
    assert result_of(node.stat("/ctl/node/n7")) == (3, DIR)
    # again: clobbers, does not fail
    result_of(node.describe_self("127.0.0.1:9000", hostname="host-1"))
    assert result_of(node.get("/ctl/node/n7/addr"))[0] == b"127.0.0.1:9000"


def test_describe_self_default_hostname():
    import socket
    node = Node(name="n1")
    result_of(node.describe_self("a:1"))
    assert result_of(node.get("/ctl/node/n1/hostname"))[0] == socket.gethostname().encode()


def test_describe_self_with_bad_name_fails():
    node = Node(name="bad name")
    f = failure_of(node.describe_self("a:1", hostname="h"), defer.FirstError)
    assert f.value.subFailure.check(DoozerError)


# -- glob cache --------------------------------------------------------------------------

def test_compile_glob_is_cached_and_errors_are_not():
    g = compile_glob("/cache/test/*")
    assert compile_glob("/cache/test/*") is g
    assert g.match("/cache/test/x") and not g.match("/cache/test/x/y")
    before = compile_glob.cache_info().hits
    compile_glob("/cache/test/*")
    assert compile_glob.cache_info().hits == before + 1
    for _ in range(2):
        with pytest.raises(DoozerError) as e:
            compile_glob("/bad glob")
        assert e.value.code == ErrCode.BAD_PATH


def test_cancelled_waiting_read_releases_its_waiter(node):
    d = node.stat("/a", 5)
    assert node.store.rev_waiter_count == 1
    d.cancel()
    failure_of(d, defer.CancelledError)
    assert node.store.rev_waiter_count == 0
    for _ in range(5):
        result_of(node.set("/a", -1, b""))
    assert node.store.rev_waiter_count == 0


def test_describe_self_voter_slot():
    node = Node(name="n2")
    result_of(node.describe_self("a:1", hostname="h", voter_slot=0))
    assert result_of(node.get("/ctl/cal/0"))[0] == b"n2"
    other = Node(name="n3")
    result_of(other.describe_self("a:1", hostname="h"))
    assert code_of(other.getdir("/ctl/cal")) == ErrCode.NOENT


def test_describe_self_never_rewrites_the_cluster_name():
    node = Node(name="n1", cluster_name="prod")
    result_of(node.describe_self("a:1", hostname="h"))
    written = result_of(node.get("/ctl/name"))
    other = Node(name="n2", store=node.store, cluster_name="prod")
    result_of(other.describe_self("b:2", hostname="h"))   # a node joining later
    assert result_of(node.get("/ctl/name")) == written == (b"prod", written[1])


def test_metrics_count_writes_without_an_outcome_and_leases():
    from twisted.internet import defer, task

    from doozertw.errors import DoozerError, ErrCode
    from doozertw.node import Node

    class Lost:
        def propose(self, mutation):
            return defer.fail(DoozerError(ErrCode.OTHER, "no quorum"))

    lost = Node(proposer=Lost())
    lost.set("/a", -1, b"x").addErrback(lambda f: None)
    figures = lost.metrics()
    assert (figures.writes, figures.write_errors, figures.write_failures) == (1, 0, 1)
    node = Node(reactor=task.Clock())
    node.grant_lease(5)
    node.grant_lease(5)
    node.set("/d", 0, b"").addErrback(lambda f: None)
    node.set("/d", 0, b"").addErrback(lambda f: None)  # REV_MISMATCH: an answer
    figures = node.metrics()
    assert (figures.leases, figures.write_errors, figures.write_failures) == (2, 1, 0)


def test_a_node_on_its_own_grants_a_one_second_lease():
    from twisted.internet import task

    from doozertw.node import Node

    granted = []
    Node(reactor=task.Clock()).grant_lease(1).addCallback(granted.append)
    assert [lease.ttl for lease in granted] == [1]
