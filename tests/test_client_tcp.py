"""The Twisted client over real TCP on 127.0.0.1 (end to end, default connector)."""

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from doozertw.client import ConnectionLost, DoozerClient, State
from doozertw.testing.servers import start_servers, stop_all


@pytest.fixture
def pair():
    servers = start_servers(2)
    yield servers
    stop_all(servers)


@pytest_twisted.inlineCallbacks
def test_round_trip_over_tcp(pair):
    client = DoozerClient(pair[0].uri, reactor=reactor)
    try:
        assert (yield client.set("/tcp/a", 0, b"x")) == 1
        assert (yield client.get("/tcp/a")) == (b"x", 1)
        assert (yield client.find("/")) == ["/", "/tcp", "/tcp/a"]
        assert (yield client.self()) == "n1"
    finally:
        client.close()


@pytest_twisted.inlineCallbacks
def test_failover_over_tcp_keeps_watch_and_writer_going(pair):
    first, second = pair
    client = DoozerClient([first.address, second.address], reactor=reactor,
                          suspend_timeout=5.0, retry_delay=0.02)
    states = []
    client.add_listener(states.append)
    seen = []
    watch = client.watch("/f/*", rev=1, callback=seen.append)
    try:
        total = 30
        for i in range(total):
            if i == 10:
                yield first.kill()
            while True:
                try:
                    yield client.set(f"/f/{i:02}", 0, str(i))
                    break
                except ConnectionLost:
                    _, rev = yield client.get(f"/f/{i:02}")
                    if rev:
                        break
        for _ in range(200):
            if len(seen) == total:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        assert [e.path for e in seen] == [f"/f/{i:02}" for i in range(total)]
        assert [e.rev for e in seen] == list(range(1, total + 1))
        assert State.SUSPENDED in states and states[-1] == State.CONNECTED
        assert (yield client.self()) == "n2"
    finally:
        watch.stop()
        client.close()


@pytest_twisted.inlineCallbacks
def test_unreachable_address_gives_up():
    client = DoozerClient("127.0.0.1:1", reactor=reactor, suspend_timeout=0.3,
                          retry_delay=0.05)
    with pytest.raises(ConnectionLost):
        yield client.rev()
    assert client.state == State.LOST
