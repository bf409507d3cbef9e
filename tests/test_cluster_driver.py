"""ClusterDriver edges: what it drops, what it skips, and bounded waits."""

import random

import pytest
from twisted.internet import task
from twisted.logger import capturedLogs

from doozertw.cluster import envelope as env
from doozertw.cluster.driver import ClusterDriver
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.consensus import ConfState, RaftNode
from doozertw.consensus.messages import AppendEntries, Heartbeat
from doozertw.errors import DoozerError
from doozertw.store import CLOBBER, SetFile, Store, encode


def solo_driver():
    clock = task.Clock()
    sent = []
    driver = ClusterDriver("solo", Store(),
                           lambda name, payload: sent.append((name, payload)) or True,
                           clock, random.Random(1))
    driver.start("solo", ConfState({"solo"}))
    for _ in range(40):
        clock.advance(0.05)
    assert driver.is_leader
    return driver, clock, sent


def test_payloads_that_lie_about_their_sender_or_are_garbage_are_dropped():
    driver, clock, _ = solo_driver()
    term = driver.raft.term
    forged = env.encode_raft(Heartbeat("other", "solo", term + 5, 0))
    driver.receive("mallory", forged)          # src "other" over mallory's link
    driver.receive("mallory", b"R\xff\x00")     # not a raft message
    driver.receive("mallory", b"")              # empty
    assert driver.raft.term == term and driver.is_leader
    assert "other" not in driver.last_heard


def test_a_message_raft_refuses_is_logged_with_why():
    driver, clock, _ = solo_driver()
    term = driver.raft.term
    impossible = AppendEntries("n2", "solo", term, 1, term + 1, 0, ())  # prev_term > term
    with capturedLogs() as events:
        assert driver.receive("n2", env.encode_raft(impossible))
    [event] = [e for e in events if e.get("kind") is not None]
    assert (event["kind"], event["peer"], event["src"]) == ("AppendEntries", "n2", "n2")
    assert event["reason"] == "bad prev_term"
    assert driver.raft.status().dropped == 1 and driver.is_leader


def test_an_undecodable_entry_is_skipped_on_every_node_alike():
    driver, clock, _ = solo_driver()
    applied = []
    driver.on_apply.append(lambda index, term, proposal, outcome: applied.append((index, proposal)))
    index, _ = driver.call(RaftNode.propose, b"not a proposal")
    good = env.Proposal("solo", 1, encode(SetFile("/ok", CLOBBER, b"v"))).encode()
    index2, _ = driver.call(RaftNode.propose, good)
    assert driver.applied == index2
    assert driver.store.get("/ok", None) == (b"v", 1)
    assert applied[-2:][0] == (index, None) and applied[-1][1].pid == 1


def test_when_applied_waits_for_the_index():
    driver, clock, _ = solo_driver()
    target = driver.applied + 1
    d = driver.when_applied(target)
    assert not d.called
    driver.call(RaftNode.propose, b"")
    assert d.called


def test_start_checks_the_member_id():
    driver = ClusterDriver("n1", Store(), lambda *a: True, task.Clock(), random.Random(1))
    with pytest.raises(ValueError):
        driver.start("n2~ab")


def test_a_node_that_never_finds_a_cluster_fails_writes_in_bounded_time():
    net = MemoryNetwork(task.Clock())
    lonely = net.add("n1", ("n1", "n2", "n3"))
    d = lonely.node.set("/x", CLOBBER, b"1")
    r = lonely.node.get("/x")
    errors = []
    d.addErrback(errors.append)
    r.addErrback(errors.append)
    net.run(4.9)
    assert not errors
    net.run(0.2)
    assert [e.check(DoozerError) for e in errors] == [DoozerError, DoozerError]
    assert all("no quorum" in e.value.detail for e in errors)
    assert lonely.store.rev == 0


def test_the_proposal_table_travels_in_snapshots():
    from doozertw.cluster.dedup import AppliedProposals, pack_snapshot, unpack_snapshot
    table = AppliedProposals(per_origin=3, max_origins=2)
    assert table.first_time("a~1", 1) and table.first_time("a~1", 2)
    assert not table.first_time("a~1", 1)
    for pid in (3, 4):
        table.first_time("a~1", pid)
    assert table.first_time("a~1", 1)  # beyond the window: forgotten
    table.first_time("b", 9)
    table.first_time("c", 9)  # evicts "a~1", the least recently used origin
    store_bytes, encoded = unpack_snapshot(pack_snapshot(b"STORE", table))
    copy = AppliedProposals()
    copy.restore(encoded)
    assert store_bytes == b"STORE"
    assert not copy.first_time("b", 9) and not copy.first_time("c", 9)
    assert copy.first_time("a~1", 3)
    with pytest.raises(DoozerError):
        copy.restore(encoded + b"x")
    with pytest.raises(DoozerError):
        unpack_snapshot(b"nope")


def test_a_drivers_life_is_drawn_once_from_its_rng():
    import random

    from doozertw.cluster.driver import ClusterDriver
    from doozertw.store import Store
    from twisted.internet import task
    driver = ClusterDriver("n1", Store(), lambda *a: None, task.Clock(), random.Random(5))
    assert driver.life == random.Random(5).getrandbits(32)
    assert driver.life == driver.life


class HeldPersister:
    """Saves into a MemoryStorage when the test releases them, in order."""

    def __init__(self, storage):
        self.storage = storage
        self.held = []          # (ready, Deferred) not yet released

    def save(self, ready):
        from twisted.internet import defer
        d = defer.Deferred()
        self.held.append((ready, d))
        return d

    def release(self, error=None):
        ready, d = self.held.pop(0)
        if error is not None:
            d.errback(error)
            return
        self.storage.save(ready)
        d.callback(None)

    def compact(self, snapshot):
        from twisted.internet import defer
        return defer.maybeDeferred(self.storage.compact, snapshot)

    def close(self):
        pass


class HeldProvider:
    durable = True

    def __init__(self):
        self.persister = None

    def space_low(self):
        return False

    def for_member(self, member_id):
        from doozertw.consensus import MemoryStorage
        storage = MemoryStorage()
        self.persister = HeldPersister(storage)
        return storage, self.persister


def held_solo_driver():
    """A solo leader whose saves complete only when released."""
    provider = HeldProvider()
    clock = task.Clock()
    fatal = []
    driver = ClusterDriver("solo", Store(), lambda name, payload: True, clock,
                           random.Random(1), storage_provider=provider, on_fatal=fatal.append)
    driver.start("solo", ConfState({"solo"}))
    for _ in range(40):
        clock.advance(0.05)
        while provider.persister.held:
            provider.persister.release()
    assert driver.is_leader
    return driver, provider.persister, fatal


def propose_set(driver, persister, path):
    proposal = env.Proposal("solo", 9, encode(SetFile(path, CLOBBER, b"v"))).encode()
    index, _ = driver.call(RaftNode.propose, proposal)
    ready, _ = persister.held[0]
    assert [e.index for e in ready.entries] == [index]
    persister.release()          # the entry is durable: it commits
    return index


def test_a_ready_that_only_moves_the_commit_index_is_applied_before_its_save_returns():
    driver, persister, fatal = held_solo_driver()
    index = propose_set(driver, persister, "/x")
    assert driver.applied == index and driver.store.get("/x", None)[0] == b"v"
    ready, _ = persister.held[0]             # its save was queued all the same
    assert ready.hard_state.commit == index and not ready.entries
    assert driver.raft.has_ready() is False and not fatal
    index2, _ = driver.call(RaftNode.propose, b"")
    assert [e.index for e in persister.held[1][0].entries] == [index2]
    persister.release()                        # saves complete in the order made
    persister.release()
    assert driver.applied == index2


def test_a_full_disk_under_a_commit_index_save_is_not_fatal_a_failed_one_is():
    from doozertw.persist.errors import StorageFailed, StorageFull
    driver, persister, fatal = held_solo_driver()
    propose_set(driver, persister, "/x")
    persister.release(StorageFull("no space"))
    assert driver.failed is None and not fatal
    propose_set(driver, persister, "/y")
    persister.release(StorageFailed("fsync failed"))
    assert driver.failed is not None and len(fatal) == 1
