"""The lease clock (doozertw.cluster.lessor), one rule per test, on a fake
clock with a store that applies proposals at once."""

import pytest
from twisted.internet import defer, task

from doozertw.cluster.lessor import Lessor
from doozertw.errors import DoozerError, ErrCode
from doozertw.store import CLOBBER, SetFile, Store
from doozertw.store.mutation import GrantLease, RevokeLease


class Proposals:
    """Applies to the store at once, or holds proposals when ``hold``."""

    def __init__(self, store):
        self.store = store
        self.made = []
        self.hold = False
        self.held = []

    def __call__(self, mutation):
        self.made.append(mutation)
        if self.hold:
            d = defer.Deferred()
            self.held.append((mutation, d))
            return d
        return defer.succeed(self.store.apply(mutation))


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def store():
    s = Store()
    s.apply(GrantLease(1, 10))
    s.apply(SetFile("/eph", CLOBBER, b"x", 1))
    return s


def make(store, clock, **kw):
    proposals = Proposals(store)
    kw.setdefault("extension", 1.0)
    return Lessor(store, proposals, clock, interval=0.5, **kw), proposals


def result(d):
    box = []
    d.addBoth(box.append)
    assert box, "not fired"
    if isinstance(box[0], Exception) or hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


def test_a_node_that_is_not_promoted_and_has_no_leader_answers_nothing(store, clock):
    lessor, proposals = make(store, clock)
    with pytest.raises(DoozerError) as err:
        result(lessor.keepalive(1))
    assert err.value.code == ErrCode.OTHER
    clock.advance(100)
    assert proposals.made == []  # nobody expires leases but the promoted leader


def test_a_follower_asks_the_leader(store, clock):
    asked = []
    lessor, _ = make(store, clock, ask_leader=lambda leases, renew: (
        asked.append((leases, renew)) or defer.succeed({1: 4.5})))
    assert result(lessor.keepalive(1)) == 4.5
    assert result(lessor.remaining((1, 2))) == {1: 4.5}
    assert asked == [((1,), True), ((1, 2), False)]


def test_promotion_gives_every_lease_its_ttl_plus_the_extension(store, clock):
    lessor, proposals = make(store, clock)
    clock.advance(100)
    lessor.promote()
    assert lessor.answer((1,), False) == {1: 11.0}
    clock.advance(10.9)
    assert proposals.made == []
    clock.advance(0.5)
    assert proposals.made == [RevokeLease(1, expired=True)]
    assert store.get("/eph") == (b"", 0)


def test_a_keepalive_restarts_the_countdown_and_never_shortens_it(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    assert result(lessor.keepalive(1)) == 11.0  # the promotion's grace is kept
    clock.advance(5)
    assert result(lessor.keepalive(1)) == 10.0
    clock.advance(9.9)
    assert proposals.made == []
    clock.advance(0.6)
    assert proposals.made == [RevokeLease(1, expired=True)]


def test_an_unknown_or_expiring_lease_is_not_kept_alive(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    with pytest.raises(DoozerError) as err:
        result(lessor.keepalive(7))
    assert err.value.code == ErrCode.NOENT
    proposals.hold = True
    clock.advance(11.5)
    assert proposals.made == [RevokeLease(1, expired=True)]
    with pytest.raises(DoozerError) as err:
        result(lessor.keepalive(1))  # its revocation is in flight
    assert err.value.code == ErrCode.NOENT


def test_an_expiry_is_proposed_once_while_in_flight_and_again_if_it_fails(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    proposals.hold = True
    clock.advance(11.5)
    clock.advance(2)
    assert proposals.made == [RevokeLease(1, expired=True)]
    proposals.held.pop()[1].errback(DoozerError(ErrCode.OTHER, "no quorum"))
    clock.advance(0.5)
    assert proposals.made == [RevokeLease(1, expired=True)] * 2


def test_a_grant_starts_its_countdown_at_its_ttl(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    lease = store.apply(GrantLease(0, 3)).lease
    lessor.granted(lease)
    assert lessor.answer((lease,), False) == {lease: 3.0}
    clock.advance(3.5)
    assert proposals.made == [RevokeLease(lease, expired=True)]


def test_a_lease_granted_elsewhere_is_timed_from_when_this_leader_sees_it(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    clock.advance(5)
    lease = store.apply(GrantLease(0, 2)).lease  # applied from the log, no granted()
    clock.advance(0.5)
    assert lessor.answer((lease,), False) == {lease: 2.0}
    clock.advance(2.5)
    assert RevokeLease(lease, expired=True) in proposals.made


def test_demotion_forgets_every_deadline_and_stops_expiring(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    lessor.demote()
    clock.advance(100)
    assert proposals.made == [] and not clock.getDelayedCalls()
    with pytest.raises(DoozerError):
        lessor.answer((1,), False)
    lessor.promote()  # a later term starts the countdown afresh
    assert lessor.answer((1,), False) == {1: 11.0}


def test_an_answer_covers_every_known_lease_asked(store, clock):
    lessor, _ = make(store, clock)
    store.apply(GrantLease(5, 4))
    lessor.promote()
    assert lessor.answer((7, 1, 5), False) == {1: 11.0, 5: 5.0}


def test_time_left_counts_down_to_zero_not_below(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    proposals.hold = True
    clock.advance(10.75)
    assert lessor.answer((1,), False) == {1: 0.25}
    lessor._revoking.clear()  # as if the revocation were still to come
    clock.advance(0.2)
    assert lessor.answer((1,), False) == {1: pytest.approx(0.05)}


def test_a_lease_expires_exactly_at_its_deadline(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()  # at 0: deadline 11.0, checks every 0.5 s
    clock.advance(10.5)
    assert proposals.made == []
    clock.advance(0.5)
    assert proposals.made == [RevokeLease(1, expired=True)]


def test_granted_ignores_a_lease_it_does_not_know_or_when_not_leading(store, clock):
    lessor, proposals = make(store, clock)
    lessor.granted(1)
    assert not clock.getDelayedCalls()
    lessor.promote()
    lessor.granted(99)  # not (yet) in this store: nothing to time
    assert lessor.answer((99,), False) == {}


def test_expiry_and_its_failure_are_logged_with_the_lease(store, clock):
    from twisted.logger import capturedLogs
    lessor, proposals = make(store, clock)
    lessor.promote()
    proposals.hold = True
    with capturedLogs() as events:
        clock.advance(11.0)
        proposals.held.pop()[1].errback(DoozerError(ErrCode.OTHER, "no quorum"))
    fields = [(e["log_format"].split(":")[0], e.get("lease"), e.get("error"))
              for e in events]
    assert ("lease.expired", 1, None) in fields
    assert ("lease.expire.failed", 1, "OTHER: no quorum") in fields


def test_refusals_say_why(store, clock):
    lessor, _ = make(store, clock)
    with pytest.raises(DoozerError) as err:
        result(lessor.keepalive(1))
    assert err.value.detail == "no leader to keep leases: try again"
    lessor.promote()
    with pytest.raises(DoozerError) as err:
        result(lessor.keepalive(7))
    assert err.value.detail == "lease 7 does not exist"


def test_a_lease_first_seen_by_a_question_counts_from_then(store, clock):
    lessor, _ = make(store, clock)
    lessor.promote()
    clock.advance(0.2)  # before the first check
    lease = store.apply(GrantLease(0, 3)).lease
    assert lessor.answer((lease,), False) == {lease: 3.0}
    clock.advance(0.1)
    assert lessor.answer((lease,), False) == {lease: pytest.approx(2.9)}


def test_a_grant_counts_from_when_it_was_applied_not_the_next_check(store, clock):
    lessor, _ = make(store, clock)
    lessor.promote()
    clock.advance(0.1)
    lease = store.apply(GrantLease(0, 3)).lease
    lessor.granted(lease)
    clock.advance(0.2)  # still before the first check
    assert lessor.answer((lease,), False) == {lease: pytest.approx(2.8)}


def test_nothing_is_kept_of_a_lease_once_its_expiry_is_applied(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    clock.advance(11.0)
    assert proposals.made == [RevokeLease(1, expired=True)]
    assert lessor._revoking == set() and lessor._deadlines == {}  # memory stays bounded


def test_a_revocation_applied_after_demotion_is_harmless(store, clock):
    lessor, proposals = make(store, clock)
    lessor.promote()
    proposals.hold = True
    clock.advance(11.0)
    mutation, waiting = proposals.held.pop()
    lessor.demote()  # leadership lost while the revocation was in flight
    waiting.callback(store.apply(mutation))
    failures = []
    waiting.addErrback(failures.append)
    assert failures == []
