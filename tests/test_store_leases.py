"""Leases and transactions in the pure store: one test per rule, the
mutation codec and the DZS3 snapshot section."""

import pytest

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import ANY, CLOBBER, DeleteFile, SetFile, Store, decode, encode
from doozertw.store import snapshot as snap
from doozertw.store.mutation import Compare, GrantLease, Nop, RevokeLease, Txn


@pytest.fixture
def store():
    return Store()


def grant(store, ttl=10, lease=0):
    out = store.apply(GrantLease(lease, ttl))
    assert out.error is None
    return out.lease


def test_grant_picks_the_next_id_and_never_reuses_one(store):
    assert grant(store) == 1
    assert grant(store, lease=7) == 7
    assert grant(store) == 8
    store.apply(RevokeLease(8))
    assert grant(store) == 9
    assert store.apply(GrantLease(7, 5)).error == ErrCode.REV_MISMATCH
    assert store.apply(GrantLease(0, 0)).error == ErrCode.RANGE
    assert store.rev == 0  # grants take no revision


def test_a_set_needs_an_existing_lease(store):
    out = store.apply(SetFile("/a", CLOBBER, b"x", 5))
    assert out.error == ErrCode.NOENT and store.rev == 0


def test_rewriting_a_file_moves_or_drops_its_lease(store):
    one, two = grant(store), grant(store)
    store.apply(SetFile("/a", CLOBBER, b"x", one))
    store.apply(SetFile("/a", CLOBBER, b"y", two))
    assert store.leases.owner("/a") == two and store.leases.files(one) == ()
    store.apply(SetFile("/a", CLOBBER, b"z"))
    assert store.leases.owner("/a") == 0 and store.leases.files(two) == ()


def test_deleting_a_file_detaches_it(store):
    lease = grant(store)
    store.apply(SetFile("/a", CLOBBER, b"x", lease))
    store.apply(DeleteFile("/a", CLOBBER))
    out = store.apply(RevokeLease(lease))
    assert out.error is None and out.events == () and store.rev == 2


def test_revoke_deletes_every_file_in_walk_order_then_notifies(store):
    lease = grant(store)
    for path in ("/z", "/a/b", "/a/a", "/m"):
        store.apply(SetFile(path, CLOBBER, b"v", lease))
    store.apply(SetFile("/other", CLOBBER, b"o"))
    seen = []
    store.add_watch(ANY, 6, lambda e: seen.append((e.path, e.rev, store.rev,
                                                   store.file_count)))
    out = store.apply(RevokeLease(lease, expired=True))
    assert out.rev == store.rev == 9
    assert [(e.path, e.rev) for e in out.events] == [
        ("/a/a", 6), ("/a/b", 7), ("/m", 8), ("/z", 9)]
    # every watcher callback runs with all four deletions applied
    assert seen == [(p, r, 9, 1) for p, r in [("/a/a", 6), ("/a/b", 7), ("/m", 8), ("/z", 9)]]
    assert lease not in store.leases
    assert store.apply(RevokeLease(lease)).error == ErrCode.NOENT


def test_txn_success_and_failure_branches(store):
    store.apply(SetFile("/x", CLOBBER, b"1"))
    ok = store.apply(Txn((Compare("/x", rev=1),), (SetFile("/y", CLOBBER, b"2"),),
                         (SetFile("/n", CLOBBER, b"3"),)))
    assert ok.succeeded and ok.revs == (2,) and store.get("/y") == (b"2", 2)
    no = store.apply(Txn((Compare("/x", value=b"nope"),), (SetFile("/y", CLOBBER, b"9"),),
                         (SetFile("/n", CLOBBER, b"3"), DeleteFile("/x", CLOBBER))))
    assert not no.succeeded and no.revs == (3, 4) and no.rev == 4
    assert store.get("/n") == (b"3", 3) and store.get("/x") == (b"", 0)


def test_txn_compare_on_a_directory_or_missing_file(store):
    store.apply(SetFile("/d/f", CLOBBER, b"1"))
    on_dir = store.apply(Txn((Compare("/d", rev=0),), (SetFile("/s", CLOBBER, b""),)))
    assert not on_dir.succeeded
    missing = store.apply(Txn((Compare("/m", rev=0),), (SetFile("/s", CLOBBER, b""),)))
    assert missing.succeeded
    by_value = store.apply(Txn((Compare("/m", value=b""),), (SetFile("/t", CLOBBER, b""),)))
    assert not by_value.succeeded
    assert store.apply(Txn((Compare("/m", rev=-1),), ())).error == ErrCode.RANGE
    assert store.apply(Txn((Compare("bad", rev=0),), ())).error == ErrCode.BAD_PATH


def test_txn_checks_every_op_before_applying_any(store):
    store.apply(SetFile("/f", CLOBBER, b"1"))
    for ops, error in [
        ((SetFile("/ok", CLOBBER, b""), SetFile("/f/under", CLOBBER, b"")), ErrCode.NOTDIR),
        ((SetFile("/ok", CLOBBER, b""), SetFile("/", CLOBBER, b"")), ErrCode.BAD_PATH),
        ((SetFile("/ok", CLOBBER, b""), SetFile("/ok", CLOBBER, b"")), ErrCode.BAD_PATH),
        ((SetFile("/p", CLOBBER, b""), DeleteFile("/p/q", CLOBBER)), ErrCode.BAD_PATH),
        ((SetFile("/ok", CLOBBER, b""), SetFile("/l", CLOBBER, b"", 4)), ErrCode.NOENT),
        ((SetFile("/ok", CLOBBER, b""), DeleteFile("/f", 0)), ErrCode.REV_MISMATCH),
    ]:
        out = store.apply(Txn((), ops))
        assert out.error == error, ops
        assert store.rev == 1 and store.get("/ok") == (b"", 0)


def test_txn_finds_a_nested_pair_among_many_ops(store):
    ops = tuple(SetFile(f"/{name}", CLOBBER, b"") for name in "abcdef") + (
        DeleteFile("/f/g", CLOBBER),)
    assert store.apply(Txn((), ops)).error == ErrCode.BAD_PATH
    assert store.rev == 0


def test_txn_deleting_a_missing_file_takes_no_revision(store):
    out = store.apply(Txn((), (DeleteFile("/none", CLOBBER), SetFile("/a", CLOBBER, b""))))
    assert out.revs == (0, 1) and out.rev == 1 and len(out.events) == 1


def test_txn_watchers_see_the_whole_transaction(store):
    seen = []
    store.add_watch(ANY, 1, lambda e: seen.append(store.get("/b")))
    store.apply(Txn((), (SetFile("/a", CLOBBER, b"1"), SetFile("/b", CLOBBER, b"2"))))
    assert seen == [(b"2", 2), (b"2", 2)]


def test_an_empty_branch_changes_nothing(store):
    out = store.apply(Txn((Compare("/a", rev=3),), (SetFile("/x", CLOBBER, b""),)))
    assert not out.succeeded and out.revs == () and out.rev == 0 and out.events == ()


# -- codec -------------------------------------------------------------------


MUTATIONS = [
    SetFile("/a", 3, b"x"), SetFile("/a", CLOBBER, b"\x00", 2 ** 63 - 1),
    DeleteFile("/b", CLOBBER), Nop(), GrantLease(0, 10), GrantLease(5, 2 ** 40),
    RevokeLease(3), RevokeLease(3, True),
    Txn((Compare("/a", rev=0), Compare("/b", value=b""), Compare("/c", rev=2 ** 63 - 1)),
        (SetFile("/c", CLOBBER, b"v", 1), DeleteFile("/d", 4)), (SetFile("/e", 0, b""),)),
    Txn(),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=repr)
def test_every_mutation_round_trips(mutation):
    assert decode(encode(mutation)) == mutation


def test_a_set_without_a_lease_keeps_its_old_encoding():
    assert encode(SetFile("/a", 1, b"v")) == b"S" + (1).to_bytes(8, "big") + b"\x00\x02/av"


@pytest.mark.parametrize("data", [
    b"G", b"G" + b"\x00" * 15, b"R" + b"\x00" * 8 + b"\x02", b"T", b"T\x00\x00\x00\x01",
    b"T" + b"\xff" * 4, b"L" + b"\x00" * 10, b"L" + b"\x00" * 8 + b"\x00\x00" + b"\x00" * 8,
    encode(Txn((), (GrantLease(1, 1),))) if False else b"T\x00\x00\x00\x00\x00\x00\x00\x01"
    b"\x00\x00\x00\x01N\x00\x00\x00\x00",
    encode(Txn((Compare("/a", rev=1),))) + b"x",
])
def test_malformed_mutations_are_refused(data):
    with pytest.raises(DoozerError) as err:
        decode(data)
    assert err.value.code == ErrCode.OTHER


def test_a_compare_gives_exactly_one_condition():
    with pytest.raises(ValueError, match="^a compare gives exactly one of rev and value$"):
        Compare("/a")
    with pytest.raises(ValueError, match="^a compare gives exactly one of rev and value$"):
        Compare("/a", rev=1, value=b"")


def test_lease_files_come_in_walk_order_not_byte_order(store):
    """Walk order compares path components: /a/b comes before /a-b."""
    lease = grant(store)
    for path in ("/a-b", "/a/b", "/a0"):
        store.apply(SetFile(path, CLOBBER, b"", lease))
    assert store.leases.files(lease) == ("/a/b", "/a-b", "/a0")
    out = store.apply(RevokeLease(lease))
    assert [e.path for e in out.events] == ["/a/b", "/a-b", "/a0"]


# -- snapshots ---------------------------------------------------------------


def test_a_store_without_leases_still_writes_dzs2(store):
    store.apply(SetFile("/a", CLOBBER, b"1"))
    assert store.snapshot()[:4] == snap.MAGIC_V2


def test_leases_and_owners_round_trip_through_a_snapshot(store):
    one, two = grant(store, 5), grant(store, 9)
    store.apply(SetFile("/a", CLOBBER, b"1", one))
    store.apply(SetFile("/b", CLOBBER, b"2", two))
    store.apply(SetFile("/c", CLOBBER, b"3"))
    store.apply(RevokeLease(two))
    grant(store, 3, lease=40)
    data = store.snapshot()
    assert data[:4] == snap.MAGIC_V3
    fresh = Store()
    fresh.restore(data)
    assert fresh.leases.items() == [(1, 5), (40, 3)]
    assert fresh.leases.attachments() == [("/a", 1)]
    assert fresh.leases.next_id == 41
    assert fresh.snapshot() == data


def test_a_snapshot_with_an_owned_file_that_does_not_exist_is_refused(store):
    lease = grant(store)
    store.apply(SetFile("/a", CLOBBER, b"1", lease))
    image = snap.decode(store.snapshot())
    import attrs
    for bad in (attrs.evolve(image, attached=(("/ghost", lease),)),
                attrs.evolve(image, attached=(("/a", 99),)),
                attrs.evolve(image, leases=((lease, 0),)),
                attrs.evolve(image, next_lease=lease)):
        with pytest.raises(DoozerError):
            Store().restore(snap.encode(bad))


def test_refused_snapshots_say_what_is_wrong(store):
    lease = grant(store)
    store.apply(SetFile("/a", CLOBBER, b"1", lease))
    store.apply(SetFile("/b", CLOBBER, b"1", lease))
    image = snap.decode(store.snapshot())
    import attrs
    for bad, detail in [
        (attrs.evolve(image, attached=(("/ghost", lease),)),
         f"bad snapshot: /ghost in lease {lease}"),
        (attrs.evolve(image, leases=((lease, 0),)), f"bad snapshot: lease {lease}"),
        (attrs.evolve(image, leases=((0, 5), (lease, 5))), "bad snapshot: bad lease list"),
        (attrs.evolve(image, leases=((3, 5), (lease, 5)), next_lease=9),
         "bad snapshot: bad lease list"),
        (attrs.evolve(image, attached=(("/a", lease), ("/a", lease))),
         "bad snapshot: owned files out of order"),
    ]:
        with pytest.raises(DoozerError) as err:
            Store().restore(snap.encode(bad))
        assert err.value.detail == detail


def test_refusals_keep_the_revision_and_say_what_was_asked(store):
    store.apply(SetFile("/x", CLOBBER, b"1"))
    lease = grant(store)
    for out in (store.apply(GrantLease(0, 0)), store.apply(GrantLease(lease, 5)),
                store.apply(RevokeLease(99)), store.apply(DeleteFile("/x", 0)),
                store.apply(Txn((Compare("bad", rev=0),), ()))):
        assert out.error is not None and out.rev == 1
    failed = store.apply(Txn((Compare("/x", value=b"no"),), (),
                             (SetFile("/x/under", CLOBBER, b""),)))
    assert failed.error == ErrCode.NOTDIR and failed.succeeded is False
    done = store.apply(Txn((Compare("/x", value=b"1"),), (SetFile("/y", CLOBBER, b""),)))
    assert done.succeeded and done.revs == (2,)
    assert store.apply(RevokeLease(lease)).lease == lease
    assert store.leases.ids() == []
    grant(store, lease=7)
    grant(store, lease=3)
    assert store.leases.ids() == [3, 7]


@pytest.mark.parametrize("cut", range(1, 30))
def test_a_truncated_lease_section_is_refused(store, cut):
    lease = grant(store)
    store.apply(SetFile("/a", CLOBBER, b"1", lease))
    data = store.snapshot()
    with pytest.raises(DoozerError):
        snap.decode(data[:-cut])
