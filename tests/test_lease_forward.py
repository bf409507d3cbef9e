"""Forwarded lease questions (doozertw.cluster.lease_forward), one rule per
test, with a fake driver and a fake clock."""

import pytest
from twisted.internet import task

from doozertw.cluster import envelope as env
from doozertw.cluster import lease_forward
from doozertw.cluster.lease_forward import LeaseForwarder
from doozertw.errors import DoozerError, ErrCode


class FakeDriver:
    def __init__(self, leader="n2~b", member_id="n1~a", life=3):
        self.name = "n1"
        self.member_id = member_id
        self.leader = leader
        self.life = life
        self.on_envelope = {}
        self.sent = []

    def send_envelope(self, name, envelope):
        self.sent.append((name, envelope))
        return True


@pytest.fixture
def clock():
    return task.Clock()


def make(clock, answer=None, **kw):
    driver = FakeDriver(**kw)
    fwd = LeaseForwarder(driver, clock, answer or (lambda leases, renew: {}), timeout=2.0)
    return fwd, driver


def fired(d):
    box = []
    d.addBoth(box.append)
    assert box, "not fired"
    return box[0]


def error_of(d):
    result = fired(d)
    assert isinstance(result.value, DoozerError), result
    return result.value


def test_without_a_leader_or_as_the_leader_nothing_is_sent(clock):
    for leader in (None, "", "n1~a"):
        fwd, driver = make(clock, leader=leader)
        assert error_of(fwd.ask((1,), True)).code == ErrCode.OTHER
        assert driver.sent == []


def test_a_question_goes_to_the_leader_by_name_and_its_answer_comes_back(clock):
    fwd, driver = make(clock)
    d = fwd.ask((4, 9), True)
    [(name, asked)] = driver.sent
    assert name == "n2"
    assert asked == env.LeaseAsk("n1", asked.req, True, [4, 9])
    assert asked.req >> 32 == 3  # numbered within this life
    driver.on_envelope[env.LeaseAnswer]("n2", env.LeaseAnswer(asked.req, True, [(4, 1500)]))
    assert fired(d) == {4: 1.5}
    assert not clock.getDelayedCalls()


def test_each_question_has_its_own_number(clock):
    fwd, driver = make(clock)
    fwd.ask((1,), False)
    fwd.ask((1,), False)
    assert driver.sent[0][1].req + 1 == driver.sent[1][1].req


def test_a_refusal_or_silence_fails_the_question(clock):
    fwd, driver = make(clock)
    d = fwd.ask((1,), True)
    driver.on_envelope[env.LeaseAnswer]("n2", env.LeaseAnswer(driver.sent[0][1].req, False))
    assert error_of(d).code == ErrCode.OTHER
    d = fwd.ask((1,), True)
    clock.advance(1.9)
    assert not d.called
    clock.advance(0.2)
    err = error_of(d)
    assert err.code == ErrCode.OTHER and "within 2s" in err.detail


def test_an_answer_nobody_waits_for_is_ignored(clock):
    fwd, driver = make(clock)
    d = fwd.ask((1,), True)
    driver.on_envelope[env.LeaseAnswer]("n2", env.LeaseAnswer(12345, True, [(1, 10)]))
    assert not d.called


def test_the_leader_answers_a_follower_in_milliseconds(clock):
    asked = []

    def answer(leases, renew):
        asked.append((leases, renew))
        return {7: 2.5, 3: 0.0015}
    fwd, driver = make(clock, answer=answer)
    driver.on_envelope[env.LeaseAsk]("n3", env.LeaseAsk("n3~c", 42, True, [7, 3]))
    assert asked == [((7, 3), True)]
    assert driver.sent == [("n3", env.LeaseAnswer(42, True, [(3, 1), (7, 2500)]))]


def test_a_node_that_cannot_answer_says_so(clock):
    def answer(leases, renew):
        raise DoozerError(ErrCode.OTHER, "not the leader")
    fwd, driver = make(clock, answer=answer)
    driver.on_envelope[env.LeaseAsk]("n3", env.LeaseAsk("n3~c", 5, False, [1]))
    assert driver.sent == [("n3", env.LeaseAnswer(5, False))]


def test_a_question_in_another_nodes_name_is_ignored(clock):
    fwd, driver = make(clock, answer=lambda leases, renew: {1: 1.0})
    driver.on_envelope[env.LeaseAsk]("n3", env.LeaseAsk("n4~d", 5, True, [1]))
    assert driver.sent == []


def test_a_long_listing_is_asked_in_parts_and_merged(clock, monkeypatch):
    monkeypatch.setattr(lease_forward, "MAX_ASKED", 2)
    fwd, driver = make(clock)
    d = fwd.ask((1, 2, 3, 4, 5), False)
    assert [list(e.leases) for _, e in driver.sent] == [[1, 2], [3, 4], [5]]
    for _, asked in driver.sent:
        items = [(lease, lease * 1000) for lease in asked.leases if lease != 4]
        driver.on_envelope[env.LeaseAnswer]("n2", env.LeaseAnswer(asked.req, True, items))
    assert fired(d) == {1: 1.0, 2: 2.0, 3: 3.0, 5: 5.0}


def test_stopping_fails_every_waiting_question(clock):
    fwd, driver = make(clock)
    waiting = [fwd.ask((1,), True), fwd.ask((2,), False)]
    fwd.fail_all("node stopping")
    for d in waiting:
        err = error_of(d)
        assert err.code == ErrCode.OTHER and err.detail == "node stopping"
    assert not clock.getDelayedCalls()


def test_a_long_keepalive_renews_in_every_part(clock, monkeypatch):
    monkeypatch.setattr(lease_forward, "MAX_ASKED", 2)
    fwd, driver = make(clock)
    fwd.ask((1, 2, 3), True)
    assert [e.renew for _, e in driver.sent] == [True, True]
