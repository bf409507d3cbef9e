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
from doozertw.benchmarks import cluster, etcd
from doozertw.benchmarks.stats import (
    Row,
    Sample,
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
    names = [name for name, _ in cluster.workloads(args)]
    assert names == ["seq writes x1", "writes x64", "lin reads x64",
                     "watch 200 @100/s", "watch 1000 @100/s"]


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
    assert set(rows) == {"seq writes x1", "writes x4", "lin reads x4", "watch 6 @20/s"}
    for row in rows.values():
        assert row["count"] > 0 and row["p99_ms"] is not None, (system, row)
        assert row["max_ms"] >= row["p99_ms"] >= row["p50_ms"] > 0
        assert row["server_cpu"] > 0 and row["generator_cpu"] > 0
    assert rows["watch 6 @20/s"]["missing"] == 0, system
    assert rows["watch 6 @20/s"]["writes"] > 0, system
    assert report["elections"] >= 0


@pytest.mark.e2e
@pytest.mark.slow
def test_cluster_mode_runs_on_a_spawned_cluster(tmp_path):
    printed, reports = _bench(tmp_path, "--memory", "--memory-files", "500")
    assert [r["system"] for r in reports] == ["doozertw"]
    _check_rows(reports[0], "doozertw")
    assert len(reports[0]["rss_mb"]) == 3 and all(x > 10 for x in reports[0]["rss_mb"])
    assert "[doozer protocol]" in printed and "leader elections" in printed
    assert "RSS per node after 500 files" in printed


@pytest.mark.e2e
@pytest.mark.slow
def test_compare_etcd_prints_ratios(tmp_path):
    if etcd.available() is None:
        pytest.skip("etcd is not installed (Debian: apt-get install etcd-server)")
    pytest.importorskip("grpc", reason="--compare-etcd needs grpcio")
    printed, reports = _bench(tmp_path, "--compare-etcd")
    assert [r["system"] for r in reports] == ["doozertw", "etcd"]
    for report in reports:
        _check_rows(report, report["system"])
    assert "[etcd gRPC]" in printed and "doozertw/etcd:" in printed
