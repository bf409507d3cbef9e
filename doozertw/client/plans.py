"""Multi-request helpers as pure plans, shared by both clients.

A plan is a generator that yields a list of Calls to send at once
(pipelined) and is sent back the list of their outcomes, each a result or
the DoozerError that request failed with. It returns its answer with
``return``. ``drive_blocking`` runs a plan on the blocking client; the
Twisted client runs it in ``DoozerClient.run_plan``.

Every plan pins one revision first (the current one, unless given), so its
answer is a consistent snapshot even while others write.
"""

from doozertw.errors import DoozerError, ErrCode
from doozertw.client.core import call
from doozertw.store import DIR

BATCH = 32


def _raise_errors(outcomes):
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


def pin(rev):
    """Plan: ``rev`` if given, else the current revision."""
    if rev is not None:
        return rev
    (current,) = _raise_errors((yield [call("REV")]))
    return current


def _until_range(verb, path, rev, batch):
    """Plan: results of ``verb`` at offsets 0, 1, ... until RANGE."""
    found = []
    offset = 0
    while True:
        outcomes = yield [call(verb, path=path, rev=rev, offset=o)
                          for o in range(offset, offset + batch)]
        for outcome in outcomes:
            if isinstance(outcome, DoozerError) and outcome.code == ErrCode.RANGE:
                return found
            if isinstance(outcome, BaseException):
                raise outcome
            found.append(outcome)
        offset += batch


def getdir_all(path, rev=None, batch=BATCH):
    """Plan: every entry name of directory ``path``, sorted."""
    rev = yield from pin(rev)
    return (yield from _until_range("GETDIR", path, rev, batch))


def walk_all(glob, rev=None, batch=BATCH):
    """Plan: every file matching ``glob`` as SET Events, in walk order."""
    rev = yield from pin(rev)
    return (yield from _until_range("WALK", glob, rev, batch))


def _join(directory, name):
    return directory + name if directory.endswith("/") else directory + "/" + name


def find(root="/", rev=None, batch=BATCH):
    """Plan: ``root`` and every directory and file under it, depth first.

    The order and content are those of the Go ``doozer find``: a directory
    is listed before its entries, entries in name order. NOENT if ``root``
    does not exist.
    """
    rev = yield from pin(rev)
    ((_, root_rev),) = _raise_errors((yield [call("STAT", path=root, rev=rev)]))
    if root_rev == 0:
        raise DoozerError(ErrCode.NOENT, root)
    found = []
    yield from _visit(root, root_rev == DIR, rev, batch, found)
    return found


def _visit(path, is_dir, rev, batch, found):
    found.append(path)
    if not is_dir:
        return
    names = yield from _until_range("GETDIR", path, rev, batch)
    children = [_join(path, name) for name in names]
    stats = _raise_errors((yield [call("STAT", path=c, rev=rev) for c in children]))
    for child, (_, child_rev) in zip(children, stats):
        yield from _visit(child, child_rev == DIR, rev, batch, found)


def tree(root="/", rev=None, batch=BATCH):
    """Plan: (path, is_dir, length, rev) for ``root`` and everything under it."""
    rev = yield from pin(rev)
    paths = yield from find(root, rev, batch)
    stats = _raise_errors((yield [call("STAT", path=p, rev=rev) for p in paths]))
    return [(p, r == DIR, length, r) for p, (length, r) in zip(paths, stats)]


def drive_blocking(plan, many):
    """Run ``plan`` to its answer; ``many(calls)`` returns their outcomes."""
    try:
        calls = next(plan)
        while True:
            calls = plan.send(many(calls))
    except StopIteration as stop:
        return stop.value
