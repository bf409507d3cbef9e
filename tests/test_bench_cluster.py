"""The side-by-side cluster benchmark: its pure parts (arguments,
percentiles, rows, ratios, the hand-made etcd protobuf messages) unmarked,
and short real runs (a 3-node doozertw cluster; etcd when installed)
marked e2e and slow."""

import json
import queue
import subprocess
import sys

import pytest

from doozertw import bench
from doozertw.benchmarks import cluster, doozer, etcd, http
from doozertw.benchmarks.stats import (
    Failover,
    Row,
    Sample,
    elections_seen,
    failover_gap,
    format_failover,
    format_failover_row,
    summarize_failover,
    format_row,
    format_table,
    merge,
    percentile,
    ratio,
    summarize,
)

# -- arguments -----------------------------------------------------------------


def test_defaults_follow_the_issue_table():
    args = cluster.parse_args(["--cluster"])
    assert (args.clients, args.value_size, args.keys) == (64, 100, 64)
    assert args.watchers == [200] and args.watch_rate == 100.0
    assert not args.compare_etcd and not args.memory and args.memory_files == 100_000
    assert args.drain == 3.0 and args.workers == 3


def test_watcher_counts_are_a_comma_list():
    assert cluster.parse_args(["--watchers", "200,1000"]).watchers == [200, 1000]


@pytest.mark.parametrize("bad", [["--watchers", "0"], ["--watchers", "x"],
                                 ["--watchers", "100000000"], ["--clients", "-1"],
                                 ["--seconds", "0"], ["--clients", "99999999"],
                                 ["--value-size", "0"]])
def test_hostile_or_nonsense_arguments_are_refused(bad, capsys):
    with pytest.raises(SystemExit):
        cluster.parse_args(bad)


def test_workers_never_exceed_clients():
    assert cluster.parse_args(["--clients", "2", "--workers", "8"]).workers == 2


def test_bench_dispatches_the_cluster_mode_and_keeps_its_own(monkeypatch):
    seen = []
    monkeypatch.setattr(cluster, "main", lambda argv: seen.append(argv) or "cluster")
    assert bench.main(["--cluster", "-s", "1"]) == "cluster"
    assert bench.main(["--compare-etcd"]) == "cluster"
    assert seen == [["--cluster", "-s", "1"], ["--compare-etcd"]]
    assert bench.parse_args(["--spawn"]).spawn     # the old mode's parser is untouched


def test_workload_rows_in_the_issue_order():
    args = cluster.parse_args(["--clients", "64", "--watchers", "200,1000"])
    names = [name for name, _, _ in cluster.workloads(args)]
    assert names == ["seq writes x1", "writes x64", "lin reads x64", "http writes x64",
                     "http lin reads x64", "watch 200 @100/s", "watch 1000 @100/s"]


# -- percentiles and rows -----------------------------------------------------


def test_percentile_is_nearest_rank():
    data = [float(i) for i in range(1, 101)]
    assert percentile(data, 0.50) == 50.0
    assert percentile(data, 0.99) == 99.0
    assert percentile(data, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile(data, 0.0)


def test_summarize_gives_rate_and_milliseconds():
    lat = tuple(i / 1000 for i in range(1, 101))      # 1..100 ms
    row = summarize("writes x64", "doozer protocol",
                    Sample(count=100, errors=2, latencies=lat, elapsed=4.0))
    assert row.ops_per_s == 25.0
    assert (row.p50_ms, row.p99_ms, row.max_ms) == (50.0, 99.0, 100.0)
    assert row.errors == 2 and row.missing is None


def test_summarize_counts_missing_watch_events():
    row = summarize("watch", "x", Sample(count=9, errors=0, latencies=(0.001,) * 9,
                                         elapsed=1.0, expected=12))
    assert row.missing == 3


def test_empty_sample_has_no_latencies():
    row = summarize("w", "x", Sample(0, 0, (), 0.0))
    assert row.ops_per_s == 0.0 and row.p99_ms is None and row.max_ms is None


def test_merge_adds_workers_and_takes_the_longest_wall_time():
    sample = merge([(2, 0, [0.1, 0.2], 3.0), (1, 1, [0.3], 3.5)], expected=4,
                   generator_cpu=0.5)
    assert (sample.count, sample.errors, sample.elapsed) == (3, 1, 3.5)
    assert sorted(sample.latencies) == [0.1, 0.2, 0.3]
    assert sample.expected == 4 and sample.generator_cpu == 0.5


def test_generator_cpu_is_the_busiest_timed_part():
    parts = [(1, 0, [], 1.0, 0.5, 2.0), (1, 0, [], 1.0, 1.5, 2.0), (1, 0, [], 1.0)]
    assert cluster.generator_cpu(parts) == 0.75
    assert cluster.generator_cpu([(1, 0, [], 1.0)]) is None


def test_timed_worker_appends_cpu_and_wall_but_passes_errors_through():
    out: queue.Queue = queue.Queue()
    cluster.Timed(lambda x, results: results.put((x, 0, [], 1.0)))(5, out)
    result = out.get_nowait()
    assert result[:4] == (5, 0, [], 1.0) and len(result) == 6 and result[4] >= 0
    cluster.Timed(lambda results: results.put(("error", "boom")))(out)
    assert out.get_nowait() == ("error", "boom")


def test_ratio_formatting():
    assert ratio(5089.0, 5541.0) == "0.92x"
    assert ratio(None, 1.0) == "-" and ratio(1.0, None) == "-" and ratio(1.0, 0.0) == "-"


def _row(name, rate, p99, **kw):
    return Row(workload=name, api=kw.pop("api", "doozer protocol"), count=10, errors=0,
               ops_per_s=rate, p50_ms=p99 / 2, p99_ms=p99, max_ms=p99 * 2, **kw)


def test_row_names_api_and_flags_a_busy_generator():
    line = format_row(_row("writes x64", 5089.0, 76.0, generator_cpu=0.95, missing=3))
    assert "writes x64" in line and "5,089.0/s" in line and "p99   76.00" in line
    assert "[doozer protocol]" in line and "3 events missing" in line
    assert "GENERATOR BUSY" in line
    assert "BUSY" not in format_row(_row("w", 1.0, 1.0, generator_cpu=0.2))


def test_table_prints_both_systems_and_ratios_per_row():
    ours = [_row("writes x64", 5000.0, 80.0), _row("lin reads x64", 12000.0, 40.0)]
    theirs = [_row("writes x64", 5000.0 / 0.9, 20.0, api="etcd gRPC"),
              _row("lin reads x64", 8000.0, 10.0, api="etcd gRPC")]
    text = format_table(ours, theirs)
    assert "doozertw:" in text and "etcd:" in text and "[etcd gRPC]" in text
    ratios = text.split("doozertw/etcd:")[1]
    assert "ops/s   0.90x" in ratios and "p99   4.00x" in ratios
    assert "ops/s   1.50x" in ratios
    assert "doozertw/etcd" not in format_table(ours)


def test_report_names_elections_and_rss():
    args = cluster.parse_args(["--memory", "--memory-files", "1000"])
    text = cluster.format_report([{"system": "doozertw", "rows": [_row("w", 1.0, 1.0)],
                                   "elections": 0, "rss_mb": [70.5, 71.0, 69.9],
                                   "fill_s": 12.5}], args)
    assert "leader elections during the workloads: 0" in text
    assert "1,000 files of 100 B: 70.5 MB, 71.0 MB, 69.9 MB (loaded in 12.5 s)" in text


def test_rss_and_cpu_of_this_process_are_plausible():
    import os
    assert 1.0 < cluster.rss_mb(os.getpid()) < 24_000
    before = cluster.process_cpu([os.getpid()])
    sum(i * i for i in range(300_000))
    assert cluster.process_cpu([os.getpid()]) >= before > 0


def test_watch_row_names_writes_and_node_cpu():
    row = summarize("watch 200 @100/s", "x", Sample(
        count=10, errors=0, latencies=(0.01,) * 10, elapsed=1.0, expected=10,
        server_cpu=1.5, writes=5))
    line = format_row(row)
    assert "5 writes" in line and "nodes cpu 1.50 cores" in line and "missing" not in line


# -- failover -----------------------------------------------------------------


def test_failover_is_off_by_default_and_bounded(capsys):
    args = cluster.parse_args([])
    assert not args.failover and args.failovers == 3 and args.failover_clients == 8
    assert (args.failover_lead, args.failover_window, args.failover_retry) == (1.0, 4.0, 0.2)
    for bad in (["--failovers", "0"], ["--failovers", "101"], ["--failover-clients", "9999"],
                ["--failover-window", "3600"], ["--failover-retry", "-1"]):
        with pytest.raises(SystemExit):
            cluster.parse_args(bad)


def test_stall_is_the_longest_gap_after_the_fault():
    # acks every 10 ms until the fault at 1.0, one in-flight ack just after
    # it, nothing until 1.8, then acks again; the window ends at 3.0
    acks = [i / 100 for i in range(101)] + [1.002] + [1.8 + i / 100 for i in range(50)]
    got = failover_gap(acks, fault=1.0, end=3.0)
    assert got.stall == pytest.approx(0.798) and got.recovery == pytest.approx(0.8)
    assert got.acks == len(acks)


def test_a_gap_straddling_the_fault_counts_from_the_last_ack_before_it():
    got = failover_gap([0.1, 0.5, 0.9, 1.6, 1.7], fault=1.0, end=2.0)
    assert got.stall == pytest.approx(0.7) and got.recovery == pytest.approx(0.6)


def test_acks_before_the_window_or_after_its_end_do_not_matter():
    got = failover_gap([0.0, 0.95, 1.3, 9.0], fault=1.0, end=2.0)
    assert got.stall == pytest.approx(0.7) and got.recovery is None    # 1.3 -> end
    assert got.acks == 3


def test_no_ack_after_the_fault_is_no_recovery():
    got = failover_gap([0.5, 0.9], fault=1.0, end=5.0)
    assert got.recovery is None and got.stall == pytest.approx(4.1)
    assert failover_gap([], fault=1.0, end=2.0) == Failover(stall=1.0, recovery=None, acks=0)
    with pytest.raises(ValueError):
        failover_gap([1.0], fault=2.0, end=1.0)


def test_elections_of_a_round_are_the_largest_increase_of_a_survivor():
    # node 0 was killed and restarted: its counter began again from zero
    assert elections_seen([5, 5, 4], [1, 6, 5], faulted=0) == 1
    assert elections_seen([5, 5, 4], [5, 7, 5], faulted=2) == 2
    assert elections_seen([3], [0], faulted=0) == 0


def test_failover_rows_give_p50_and_max_and_count_the_unrecovered():
    rounds = [Failover(0.8, 0.81, 100, 1, 1), Failover(0.6, 0.6, 90, 0, 2),
              Failover(4.0, None, 50, 2, 1)]
    row = summarize_failover("failover kill", "doozer protocol", rounds)
    assert (row.stall_p50_ms, row.stall_max_ms) == (800.0, 4000.0)
    assert (row.recovery_p50_ms, row.recovery_max_ms) == (600.0, 810.0)
    assert (row.unrecovered, row.errors, row.acks, row.rounds) == (1, 3, 240, 3)
    assert row.stalls_ms == (800.0, 600.0, 4000.0) and row.elections == 4
    line = format_failover_row(row)
    assert "stall p50   800.0 max 4,000.0 ms" in line and "1 NOT RECOVERED" in line
    assert "3 rounds: 800, 600, 4,000 ms" in line and "3 errors" in line
    assert "4 elections" in line
    empty = summarize_failover("failover pause", "x", [])
    assert empty.stall_p50_ms is None and empty.rounds == 0


def test_failover_table_prints_the_ratio_of_stalls():
    ours = [summarize_failover("failover kill", "doozer protocol", [Failover(0.5, 0.5)])]
    theirs = [summarize_failover("failover kill", "etcd gRPC", [Failover(2.0, 2.0)])]
    text = format_failover(ours, theirs)
    assert "etcd failover:" in text and "[etcd gRPC]" in text
    assert "stall p50   0.25x  max   0.25x" in text.split("doozertw/etcd failover:")[1]
    assert "etcd" not in format_failover(ours)
    assert format_failover(theirs, name="etcd").startswith("etcd failover:")


def test_report_prints_failover_rows_and_their_elections_apart():
    args = cluster.parse_args([])
    row = summarize_failover("failover kill", "doozer protocol", [Failover(0.7, 0.7)])
    text = cluster.format_report([{"system": "doozertw", "rows": [_row("w", 1.0, 1.0)],
                                   "elections": 0, "rss_mb": None, "failover": [row],
                                   "failover_elections": 4}], args)
    assert "leader elections during the workloads: 0" in text
    assert "leader elections during the failover rounds: 4" in text
    assert "failover kill" in text and "stall p50   700.0" in text


class _FakeProto:
    """Answers nothing by itself: the test fires ``sent[i]``."""

    def __init__(self):
        self.sent, self.closed = [], False

    def send(self, _request):
        from twisted.internet import defer
        self.sent.append(defer.Deferred())
        return self.sent[-1]

    def close(self):
        self.closed = True
        from doozertw.client import ConnectionLost
        for d in self.sent:
            if not d.called:
                d.errback(ConnectionLost())


def _writer(retry=0.2):
    from twisted.internet import task
    clock, proto, log = task.Clock(), _FakeProto(), doozer._AckLog()
    writer = doozer._FailoverWriter(clock, proto, ["a:1", "b:2"], 0, object(), retry, log)
    return clock, proto, log, writer


def test_failover_writer_resends_a_late_write_beside_it_and_counts_both_answers():
    clock, proto, log, writer = _writer()
    writer.send()
    assert len(proto.sent) == 1
    clock.advance(0.2)                    # unanswered: sent again, the first stays
    assert len(proto.sent) == 2 and log.sent == 2
    proto.sent[0].callback(None)          # the old one answers: counted, no new write
    assert len(log.acks) == 1 and len(proto.sent) == 2
    proto.sent[1].callback(None)          # the newest answers: the next write goes
    assert len(log.acks) == 2 and len(proto.sent) == 3
    clock.advance(0.1)
    assert len(proto.sent) == 3           # the retry timer restarted with that write


def test_failover_writer_pauses_after_an_error_and_bounds_its_outstanding_writes():
    from doozertw.client import DoozerError, ErrCode
    clock, proto, log, writer = _writer()
    writer.send()
    proto.sent[0].errback(DoozerError(ErrCode.OTHER, "no quorum"))
    assert log.errors == 1 and len(proto.sent) == 1
    clock.advance(doozer.ERROR_PAUSE)
    assert len(proto.sent) == 2
    for _ in range(doozer.MAX_OUTSTANDING * 3):
        clock.advance(0.2)
    assert len(proto.sent) == 1 + doozer.MAX_OUTSTANDING
    writer.stop()
    assert proto.closed and log.errors == 1     # answers after stop are not counted


def test_failover_writer_moves_to_the_next_address_when_its_connection_is_lost(monkeypatch):
    from twisted.internet import defer
    clock, proto, log, writer = _writer()
    dialed, other = [], _FakeProto()
    monkeypatch.setattr(doozer, "TCPConnector", lambda reactor, timeout: (
        lambda address: dialed.append(address) or defer.succeed(other)))
    writer.send()
    proto.close()
    assert [(a.host, a.port) for a in dialed] == [("b", 2)] and log.errors == 0
    assert len(other.sent) == 1 and writer.proto is other


# -- etcd's messages, by hand -------------------------------------------------


def test_varint_encoding():
    assert etcd.varint(0) == b"\x00" and etcd.varint(1) == b"\x01"
    assert etcd.varint(300) == b"\xac\x02"


def test_requests_match_protobuf_encoding():
    assert etcd.put_request(b"/k", b"v") == b"\x0a\x02/k\x12\x01v"
    assert etcd.range_request(b"/k") == b"\x0a\x02/k"
    # WatchRequest{create_request{key, range_end, start_revision=5}}
    inner = b"\x0a\x02/a\x12\x02/b\x18\x05"
    assert etcd.watch_create(b"/a", b"/b", 5) == b"\x0a" + bytes([len(inner)]) + inner


def test_prefix_end():
    assert etcd.prefix_end(b"/bench/watch/") == b"/bench/watch0"


def _kv(value: bytes) -> bytes:
    return etcd._bytes_field(1, b"/k") + etcd._int_field(3, 9) + etcd._bytes_field(5, value)


def test_watch_response_values_and_header_revision():
    header = etcd._int_field(1, 77) + etcd._int_field(3, 42)
    events = b"".join(etcd._bytes_field(11, etcd._int_field(1, 0) + etcd._bytes_field(2, _kv(v)))
                      for v in (b"one", b"two"))
    response = etcd._bytes_field(1, header) + etcd._int_field(2, 1) + events
    assert etcd.watch_event_values(response) == [b"one", b"two"]
    assert etcd.response_revision(response) == 42
    with pytest.raises(ValueError):
        etcd.response_revision(etcd._int_field(2, 1))


@pytest.mark.parametrize("hostile", [b"\x0a\x05ab", b"\xff" * 11, b"\x0b", b"\x09\x01"])
def test_malformed_responses_raise_value_error(hostile):
    with pytest.raises(ValueError):
        list(etcd.fields(hostile))


def test_etcd_command_line_is_loopback_with_scratch_data(tmp_path):
    c = etcd.EtcdCluster()
    try:
        cmd = c.command("e1")
        assert cmd[cmd.index("--data-dir") + 1].startswith(c.workdir)
        assert all("127.0.0.1" in cmd[cmd.index(f) + 1] for f in (
            "--listen-client-urls", "--listen-peer-urls", "--initial-cluster"))
        assert "--unsafe-no-fsync" not in cmd
    finally:
        c.stop()


# -- HTTP rows (http.py) ------------------------------------------------------


def _split_request(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    first, *lines = head.decode("ascii").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    assert int(headers["content-length"]) == len(body) if body else True
    return first, headers, body


def test_doozer_http_requests_put_the_raw_value_and_get_the_key():
    first, headers, body = _split_request(
        http.doozer_request("127.0.0.1:81", "write", "/bench/k3", b"xyz"))
    assert first == "PUT /v1/keys/bench/k3 HTTP/1.1" and body == b"xyz"
    assert headers["host"] == "127.0.0.1:81" and headers["content-length"] == "3"
    assert headers["content-type"] == "application/octet-stream"     # not JSON: raw
    first, headers, body = _split_request(
        http.doozer_request("h:1", "read", "/bench/k3", b"xyz"))
    assert first == "GET /v1/keys/bench/k3 HTTP/1.1" and body == b"" and "host" in headers
    with pytest.raises(ValueError):
        http.doozer_request("h:1", "delete", "/k", b"")


def test_etcd_gateway_requests_are_base64_json_on_v3():
    import base64
    first, headers, body = _split_request(
        http.etcd_request("127.0.0.1:2379", "write", "/bench/k3", b"\xffv"))
    assert first == "POST /v3/kv/put HTTP/1.1" and headers["host"] == "127.0.0.1:2379"
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert base64.b64decode(doc["key"]) == b"/bench/k3"
    assert base64.b64decode(doc["value"]) == b"\xffv"
    first, _, body = _split_request(http.etcd_request("h:1", "read", "/bench/k3", b"v"))
    assert first == "POST /v3/kv/range HTTP/1.1"
    assert json.loads(body) == {"key": base64.b64encode(b"/bench/k3").decode()}  # linearizable
    with pytest.raises(ValueError):
        http.etcd_request("h:1", "watch", "/k", b"")


def test_http_endpoints_are_web_ports_and_etcd_client_urls():
    class Fake:
        web_ports, endpoints = [8001, 8002], ["127.0.0.1:2379"]
    assert http.doozer_endpoints(Fake()) == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert http.etcd_endpoints(Fake()) == ["127.0.0.1:2379"]


OK_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello"
OK_CHUNKED = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")


def _byte_by_byte(parser, data):
    done = []
    for i in range(len(data)):
        done += parser.feed(data[i:i + 1])
    return done


def test_parser_reads_length_and_chunked_bodies_in_any_pieces():
    assert http.ResponseParser().feed(OK_LENGTH) == [(200, False)]
    assert _byte_by_byte(http.ResponseParser(), OK_LENGTH) == [(200, False)]
    assert _byte_by_byte(http.ResponseParser(), OK_CHUNKED) == [(201, False)]
    parser = http.ResponseParser()
    two = OK_CHUNKED + b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" + OK_LENGTH
    assert parser.feed(two[:-3]) == [(201, False), (404, False)]
    assert parser.feed(two[-3:]) == [(200, False)] and not parser.buf


def test_parser_skips_1xx_handles_204_and_says_when_the_server_closes():
    parser = http.ResponseParser()
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n") \
        == [(204, False)]
    assert parser.feed(b"HTTP/1.1 503 x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n") \
        == [(503, True)]
    assert parser.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n") == [(200, True)]
    assert parser.feed(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n"
                       b"Content-Length: 0\r\n\r\n") == [(200, False)]


def test_parser_discards_bodies_so_a_large_one_takes_no_memory():
    parser = http.ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n") == []
    for _ in range(255):
        assert parser.feed(b"z" * 4096) == [] and len(parser.buf) == 0
    assert parser.feed(b"z" * 4096) == [(200, False)]


@pytest.mark.parametrize("hostile", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n",            # body over 1 MiB
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n",                                          # framed by close
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100000000\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"80000\r\n" + b"a" * 0x80000
    + b"\r\n80001\r\n",                                                 # chunks over 1 MiB
])
def test_parser_refuses_malformed_or_oversized_answers(hostile):
    with pytest.raises(http.BadResponse):
        http.ResponseParser().feed(hostile)


def test_parser_bounds_an_endless_header_or_trailer_block():
    parser = http.ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(http.BadResponse):
        for _ in range(100):             # 100 x 1 KiB of headers, never ending
            parser.feed(b"X-Junk: " + b"j" * 1014 + b"\r\n")
            assert len(parser.buf) <= http.MAX_HEAD + 1024
    parser = http.ResponseParser(max_head=100)
    with pytest.raises(http.BadResponse):
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
                    + b"T: x\r\n" * 20)


def _serve_and_load(answer, kind="write", clients=(0, 1, 2), seconds=0.3):
    """Run ``http.load`` against an in-process asyncio server on loopback
    whose ``answer(n, request_head)`` gives the bytes for the n-th request
    (None: close the connection); (load's result, requests seen)."""
    import asyncio
    seen: list[bytes] = []

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                body = await reader.readexactly(length[0]) if length else b""
                seen.append(head + body)
                out = answer(len(seen), head)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def run():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await http.load([f"127.0.0.1:{port}"], list(clients), kind, seconds,
                                   10, 4, http.doozer_request)
        finally:
            server.close()

    return asyncio.run(run()), seen


def test_load_counts_2xx_answers_and_errors_other_statuses():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    bad = b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n"
    (count, errors, latencies, elapsed), seen = _serve_and_load(
        lambda n, head: bad if n % 4 == 0 else ok)
    assert count > 10 and errors > 2 and len(latencies) == count
    assert 0.25 < elapsed < 1.0 and all(0 < x < 0.3 for x in latencies)
    assert count + errors <= len(seen) <= count + errors + 3     # one in flight per client
    paths = {s.split(b" ")[1] for s in seen}
    assert paths == {b"/v1/keys/bench/k0", b"/v1/keys/bench/k1", b"/v1/keys/bench/k2"}
    assert all(s.endswith(b"x" * 10) for s in seen)


def test_load_survives_a_hostile_server_and_connects_again():
    ok = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n"
    endless = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000        # 120 KB, no end
    answers = {3: huge, 6: endless, 9: None, 12: ok + ok}        # 12: an answer to nothing

    (count, errors, _, _), seen = _serve_and_load(
        lambda n, head: answers.get(n, ok), clients=(0,), seconds=0.5)
    assert errors == 4                         # each broken answer once, none twice
    assert count > 12 and len(seen) > 16       # and it went on, on new connections


def test_load_closes_on_connection_close_without_an_error():
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    (count, errors, _, _), seen = _serve_and_load(lambda n, head: close, clients=(0,))
    assert errors == 0 and count > 3
    assert count <= len(seen) <= count + 1          # the last one may be in flight at the end


def test_http_worker_reports_an_unreachable_cluster_as_an_error():
    from doozertw.testing.node_process import free_ports
    out: queue.Queue = queue.Queue()
    http.etcd_worker([f"127.0.0.1:{free_ports(1)[0]}"], [0], "read", 0.1, 10, 4, out)
    kind, why = out.get_nowait()
    assert kind == "error" and "ConnectionRefusedError" in why


def test_http_rows_come_after_the_native_rows_and_no_http_drops_them():
    args = cluster.parse_args(["--clients", "64", "--watchers", "200"])
    assert args.http
    rows = [(name, api) for name, _, api in cluster.workloads(args)]
    assert rows == [("seq writes x1", "api"), ("writes x64", "api"), ("lin reads x64", "api"),
                    ("http writes x64", "http_api"), ("http lin reads x64", "http_api"),
                    ("watch 200 @100/s", "watch_api")]
    no_http = cluster.parse_args(["--no-http"])
    assert not no_http.http
    assert not [n for n, _, _ in cluster.workloads(no_http) if n.startswith("http")]


def test_suites_name_the_api_of_each_kind_of_row():
    [ours] = cluster.suites(cluster.parse_args([]))
    assert (ours.api, ours.http_api) == ("doozer protocol", "HTTP /v1/keys")
    assert ours.watch_api == doozer.WATCH_VIAS["stream"]
    assert ours.http_worker is http.doozer_worker and ours.http_endpoints is http.doozer_endpoints
    [leased] = cluster.suites(cluster.parse_args(["--lease-reads"]))
    assert leased.http_api == "HTTP /v1/keys, lease reads"
    if etcd.available() is None:
        return
    _, theirs = cluster.suites(cluster.parse_args(["--compare-etcd"]))
    try:
        assert (theirs.api, theirs.http_api, theirs.watch_api) == (
            "etcd gRPC", "etcd JSON gateway", "etcd gRPC")
        assert theirs.http_worker is http.etcd_worker
    finally:
        theirs.cluster.stop()


def test_run_suite_labels_each_row_with_its_api_and_the_ratio_divides_by_the_gateway(
        monkeypatch):
    import os

    class FakeCluster:
        def start(self): pass
        def stop(self): pass
        def leader_changes(self): return 0
        def pids(self): return [os.getpid()]

    def fake(rate):
        return lambda suite, args, *rest: Sample(count=int(rate), errors=0,
                                                 latencies=(0.002,), elapsed=1.0)
    args = cluster.parse_args(["--clients", "8", "--watchers", "5"])
    reports = []
    for name, api, http_api, rate in (("doozertw", "doozer protocol", "HTTP /v1/keys", 900),
                                      ("etcd", "etcd gRPC", "etcd JSON gateway", 1000)):
        suite = cluster.Suite(name, api, FakeCluster(), *[None] * 5, None, None, http_api,
                              None, "watch label")
        monkeypatch.setattr(cluster, "run_clients", fake(rate))
        monkeypatch.setattr(cluster, "run_watch", fake(rate / 10))
        reports.append(cluster.run_suite(suite, args))
    labels = {r.workload: r.api for r in reports[1]["rows"]}
    assert labels == {"seq writes x1": "etcd gRPC", "writes x8": "etcd gRPC",
                      "lin reads x8": "etcd gRPC", "http writes x8": "etcd JSON gateway",
                      "http lin reads x8": "etcd JSON gateway", "watch 5 @100/s": "watch label"}
    text = cluster.format_report(reports, args)
    ours = text.split("etcd:")[0]
    assert "http writes x8" in ours and "[HTTP /v1/keys]" in ours
    assert "[etcd JSON gateway]" in text.split("etcd:")[1]
    ratios = {line.split("ops/s")[0].strip(): line.split()[-5]
              for line in text.split("doozertw/etcd:")[1].splitlines() if "ops/s" in line}
    assert ratios["http writes x8"] == ratios["http lin reads x8"] == "0.90x"
    assert len(ratios) == 6


# -- short real runs ----------------------------------------------------------

TINY = ["--cluster", "-s", "0.5", "--clients", "4", "--workers", "2",
        "--watchers", "6", "--watch-rate", "20"]


def _bench(tmp_path, *more):
    """Run ``python -m doozertw.bench`` (its own process: the load
    processes fork and need a reactor of their own); (stdout, JSON rows)."""
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "doozertw.bench", *TINY, *more,
                           "--json", str(out)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(out.read_text())


def _check_rows(report, system):
    rows = {r["workload"]: r for r in report["rows"]}
    assert set(rows) == {"seq writes x1", "writes x4", "lin reads x4", "http writes x4",
                         "http lin reads x4", "watch 6 @20/s"}
    for row in rows.values():
        assert row["count"] > 0 and row["p99_ms"] is not None, (system, row)
        assert row["errors"] == 0 or not row["workload"].startswith("http"), (system, row)
        assert row["max_ms"] >= row["p99_ms"] >= row["p50_ms"] > 0
        assert row["server_cpu"] > 0 and row["generator_cpu"] > 0
    assert rows["watch 6 @20/s"]["missing"] == 0, system
    assert rows["watch 6 @20/s"]["writes"] > 0, system
    assert report["elections"] >= 0


FAILOVER = ["--failover", "--failovers", "1", "--failover-clients", "4"]


def _check_failover(report, system):
    rows = {r["workload"]: r for r in report["failover"]}
    assert set(rows) == {"failover kill", "failover pause"}, system
    for row in rows.values():
        assert row["rounds"] == 1 and row["acks"] > 0, (system, row)
        assert row["unrecovered"] == 0, (system, row)     # within the 4 s window
        assert 0 < row["stall_max_ms"] < 4000 and 0 < row["recovery_max_ms"] < 4000
        assert row["elections"] >= 1, (system, row)      # each round forces one
    assert report["failover_elections"] == sum(r["elections"] for r in rows.values())


@pytest.mark.e2e
@pytest.mark.slow
def test_cluster_mode_runs_on_a_spawned_cluster(tmp_path):
    printed, reports = _bench(tmp_path, "--memory", "--memory-files", "500", *FAILOVER)
    assert [r["system"] for r in reports] == ["doozertw"]
    _check_rows(reports[0], "doozertw")
    _check_failover(reports[0], "doozertw")
    assert "doozertw failover:" in printed and "during the failover rounds" in printed
    assert len(reports[0]["rss_mb"]) == 3 and all(x > 10 for x in reports[0]["rss_mb"])
    assert "[doozer protocol]" in printed and "leader elections" in printed
    assert "[HTTP /v1/keys]" in printed
    assert "RSS per node after 500 files" in printed


@pytest.mark.e2e
@pytest.mark.slow
def test_compare_etcd_prints_ratios(tmp_path):
    if etcd.available() is None:
        pytest.skip("etcd is not installed (Debian: apt-get install etcd-server)")
    pytest.importorskip("grpc", reason="--compare-etcd needs grpcio")
    printed, reports = _bench(tmp_path, "--compare-etcd", *FAILOVER)
    assert [r["system"] for r in reports] == ["doozertw", "etcd"]
    for report in reports:
        _check_rows(report, report["system"])
        _check_failover(report, report["system"])
    assert "doozertw/etcd failover:" in printed
    assert "[etcd gRPC]" in printed and "doozertw/etcd:" in printed
    assert "[etcd JSON gateway]" in printed and "[HTTP /v1/keys]" in printed
    assert "  http writes x4 " in printed.split("doozertw/etcd:")[1]


def test_node_options_pass_lease_reads_and_raft_timing_to_the_doozertw_nodes():
    args = cluster.parse_args(["--lease-reads", "--election-timeout", "0.25"])
    assert cluster.node_options(args) == ("--lease-reads", "--election-timeout", "0.25")
    assert cluster.node_options(cluster.parse_args([])) == ()
    [suite] = cluster.suites(args)
    assert suite.api == "doozer protocol, lease reads"
    assert suite.cluster.options == ("--lease-reads", "--election-timeout", "0.25")


def test_profile_stage_shares_are_cumulative_cpu_over_the_main_loop():
    from doozertw.benchmarks.profile import STAGES, stage_shares
    stats = {
        ("/v/twisted/internet/base.py", 690, "mainLoop"): (1, 1, 0.0, 4.0, {}),
        ("/v/doozertw/frontends/doozer.py", 174, "dataReceived"): (9, 9, 0.1, 1.0, {}),
        ("/v/doozertw/cluster/proposer.py", 81, "propose"): (9, 9, 0.1, 0.25, {}),
        ("/v/doozertw/cluster/proposer.py", 198, "_applied"): (9, 9, 0.1, 0.25, {}),
        ("/v/doozertw/cluster/proposer.py", 90, "_applied_not"): (9, 9, 0.1, 3.0, {}),
    }
    loop, shares = stage_shares(stats)
    found = dict(shares)
    assert loop == 4.0 and len(shares) == len(STAGES)
    assert found["client port: parse, call the node, answer"] == 0.25
    assert found["proposer: propose, forward, resolve"] == 0.125
    assert found["socket writes"] == 0.0
    assert stage_shares({}) == (0.0, [(label, 0.0) for label, _ in STAGES])
