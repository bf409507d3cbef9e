"""``doozer snapshot ...`` and ``doozer recover``: backup, restore, recovery.

    doozer snapshot save FILE [--web URL]
    doozer snapshot status FILE
    doozer snapshot restore FILE --data-dir DIR --name NAME --voters N1,N2,N3
                                 [--cluster C]
    doozer recover --data-dir DIR --name NAME [--cluster C] [--out NEWDIR]

``save`` fetches ``GET /v1/snapshot`` from a node's web port (default
http://127.0.0.1:8000) with the secret of ``-a``/``DOOZER_URI`` (its
``sk=`` parameter, as every other command), checks it, writes FILE
atomically (FILE.tmp-<pid>, fsync, rename, directory fsync) and prints the
revision on stdout. ``status`` checks a backup and prints what it holds.
``restore`` and ``recover`` work offline on data directories
(doozertw.cluster.recovery); the node must not be running. Each builds
the new directory beside its final name (``.restore-tmp`` /
``.recover-tmp``) and renames it into place, so an interrupted run never
leaves a half-written data directory where a node would start.

Exit status: 0 on success, 2 on any error, 127 for a usage error.
See docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

from doozertw.client.uri import PREFIX
from doozertw.errors import DoozerError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 2, 127
DEFAULT_WEB = "http://127.0.0.1:8000"
HTTP_TIMEOUT = 60.0
CHUNK = 1 << 16

SYNOPSES = [
    ("snapshot save <file> [--web URL]", "save a backup of a node's store"),
    ("snapshot status <file>", "check a backup and show what it holds"),
    ("snapshot restore <file> --data-dir D --name N --voters A,B,C",
     "make a new data directory from a backup"),
    ("recover --data-dir D --name N [--out NEWDIR]",
     "make a single-voter cluster of a surviving node"),
]
COMMANDS = ("snapshot", "recover")


class CommandError(Exception):
    """A failure to report as ``Error: ...`` (exit 2)."""


class _Usage(Exception):
    def __init__(self, status, message=""):
        super().__init__(message)
        self.status = status
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse that reports through our streams and never exits."""

    def __init__(self, *args, out=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._out = out

    def _print_message(self, message, file=None):
        if message and self._out is not None:
            self._out.write(message)

    def exit(self, status=0, message=None):
        raise _Usage(EXIT_OK if status == 0 else EXIT_USAGE, message or "")

    def error(self, message):
        raise _Usage(EXIT_USAGE, f"{self.prog}: {message}\n{self.format_usage()}")


def _parser(err):
    top = _Parser(prog="doozer", out=err, description="Backup, restore and recovery.")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    snap = sub.add_parser("snapshot", out=err, help="backups")
    verbs = snap.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    save = verbs.add_parser("save", out=err, help="save a backup from a running node")
    save.add_argument("file")
    save.add_argument("--web", default=DEFAULT_WEB,
                      help=f"the node's web port (default {DEFAULT_WEB})")
    status = verbs.add_parser("status", out=err, help="check a backup file")
    status.add_argument("file")
    restore = verbs.add_parser("restore", out=err, help="new data directory from a backup")
    restore.add_argument("file")
    restore.add_argument("--data-dir", required=True, help="the NEW data directory")
    restore.add_argument("--name", required=True, help="the node it is for")
    restore.add_argument("--voters", required=True,
                         help="every voter of the new cluster, comma-separated (the "
                              "same list for every node)")
    restore.add_argument("--cluster", help="cluster name (default: the backup's)")
    recover = sub.add_parser("recover", out=err,
                             help="force a single-voter cluster from a survivor")
    recover.add_argument("--data-dir", required=True, help="the survivor's data directory")
    recover.add_argument("--name", required=True, help="the survivor's node name")
    recover.add_argument("--cluster", default="local", help="cluster name (default local)")
    recover.add_argument("--out", help="write the new data directory here and leave "
                                       "DIR as it is (default: DIR itself, the old "
                                       "one moved to DIR.before-recover-<time>)")
    return top


def main(argv, options, stdout, stderr) -> int:
    """Run ``argv`` (starting with "snapshot" or "recover"); ``options``
    are cli.Options (``uri`` for the secret, ``json``). Returns the exit
    status."""
    try:
        args = _parser(stderr).parse_args(argv)
    except _Usage as e:
        stderr.write(e.message)
        return e.status
    out = _Out(stdout, options.json)
    try:
        if args.command == "recover":
            recover(args, out)
        elif args.verb == "save":
            save(args.file, args.web, secret_of(options.uri), out,
                 tls_context=_https_context(args.web, options))
        elif args.verb == "status":
            status(args.file, out)
        else:
            restore(args, out)
    except (CommandError, OSError, ValueError, DoozerError) as e:
        stderr.write(f"Error: {_message(e)}\n")
        return EXIT_ERROR
    except Exception as e:  # a persist error (DataDirError, CorruptLog, ...)
        from doozertw.persist.errors import StorageError
        if not isinstance(e, StorageError):
            raise
        stderr.write(f"Error: {e}\n")
        return EXIT_ERROR
    return EXIT_OK


def _message(e):
    return e.detail if isinstance(e, DoozerError) else str(e)


class _Out:
    def __init__(self, stream, as_json):
        self.stream = stream
        self.as_json = as_json

    def line(self, text):
        self.stream.write((text + "\n").encode("utf-8"))

    def report(self, fields, lines):
        if self.as_json:
            self.line(json.dumps(fields, sort_keys=True))
        else:
            for text in lines:
                self.line(text)
        self.stream.flush()


def secret_of(uri):
    """The ``sk=`` secret of a doozer URI, or None (as cli.dial takes it)."""
    if not uri.startswith(PREFIX):
        return None
    return urllib.parse.parse_qs(uri[len(PREFIX):]).get("sk", [None])[0]


# -- save / status ---------------------------------------------------------------


def _https_context(web, options):
    """The ssl context for an https: --web given --tls-ca etc., else None
    (urllib then verifies against the system's CAs)."""
    tls = options.tls() if hasattr(options, "tls") else None
    if tls is None or not web.lower().startswith("https:"):
        return None
    return tls.ssl_context()


def save(path, web, secret, out, tls_context=None):
    from doozertw.persist.backup import BackupError, decode_backup
    url = web.rstrip("/") + "/v1/snapshot"
    headers = {"X-Doozer-Secret": secret} if secret else {}
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=HTTP_TIMEOUT, context=tls_context) as response:
            header_rev = response.headers.get("X-Doozer-Revision")
            _stream_to(response, tmp)
        with open(tmp, "rb") as f:
            backup = decode_backup(f.read())
        if header_rev is not None and header_rev != str(backup.revision):
            raise CommandError(f"{url}: header says revision {header_rev}, the "
                               f"backup holds {backup.revision}")
        os.replace(tmp, path)
        _sync_dir(os.path.dirname(os.path.abspath(path)))
    except urllib.error.HTTPError as e:
        raise CommandError(f"{url}: HTTP {e.code}: {_http_detail(e)}") from None
    except urllib.error.URLError as e:
        raise CommandError(f"{url}: {e.reason}") from None
    except BackupError as e:
        raise CommandError(f"{url}: received an invalid backup: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    size = os.path.getsize(path)
    out.report({"file": path, "revision": backup.revision, "size": size,
                "cluster": backup.cluster, "node": backup.node},
               [str(backup.revision)])


def _stream_to(response, tmp):
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        while chunk := response.read(CHUNK):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def _http_detail(error):
    try:
        body = json.loads(error.read())
        return f"{body['error']}: {body.get('detail') or ''}".rstrip(": ")
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason


def _sync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_backup(path):
    from doozertw.persist.backup import BackupError, decode_backup
    with open(path, "rb") as f:
        data = f.read()
    try:
        return decode_backup(data), len(data)
    except BackupError as e:
        raise CommandError(f"{path}: {e}") from None


def status(path, out):
    from doozertw.cluster.recovery import open_store
    backup, size = read_backup(path)
    store = open_store(backup.store_snapshot)
    taken = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(backup.taken_at_ms / 1000))
             if backup.taken_at_ms else "unknown")
    raft = (f"{backup.raft_index} (term {backup.raft_term})" if backup.raft_index
            else "unknown")
    out.report(
        {"file": path, "revision": backup.revision, "files": store.file_count,
         "cluster": backup.cluster, "node": backup.node, "size": size,
         "history_from": store.floor, "raft_index": backup.raft_index,
         "raft_term": backup.raft_term, "taken_at_ms": backup.taken_at_ms},
        [f"revision {backup.revision}", f"files {store.file_count}",
         f"cluster {backup.cluster}", f"node {backup.node}", f"size {size}",
         f"history from revision {store.floor}", f"raft index {raft}", f"taken {taken}"])


# -- restore / recover -------------------------------------------------------------


def _names(text):
    from doozertw.config import ConfigError, check_name
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        for name in names:
            check_name(name)
    except ConfigError as e:
        raise CommandError(str(e)) from None
    if not names:
        raise CommandError("--voters: give at least one node name")
    return names


def _refuse_non_empty(path, what):
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise CommandError(f"{path}: exists and is not empty; {what}")


def _fresh_tmp(path):
    if os.path.lexists(path):
        shutil.rmtree(path)  # our own leftover from an interrupted run


def _build(tmp, write):
    """Run ``write()`` (which creates the directory ``tmp``); on failure,
    remove what it left."""
    _fresh_tmp(tmp)
    try:
        return write()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _install(tmp, final):
    """Rename the finished directory ``tmp`` to ``final`` (absent or empty)."""
    os.rename(tmp, final)
    _sync_dir(os.path.dirname(os.path.abspath(final)))


def restore(args, out):
    from doozertw.cluster.recovery import restore_data_dir
    from doozertw.persist.fs import OsFileSystem
    voters = _names(args.voters)
    name = _names(args.name)[0]
    if name not in voters:
        raise CommandError(f"--name {name} is not one of --voters {','.join(voters)}")
    backup, _ = read_backup(args.file)
    cluster = args.cluster or backup.cluster
    final = os.path.abspath(args.data_dir)
    _refuse_non_empty(final, "restore makes a NEW data directory")
    tmp = f"{final}.restore-tmp"
    written = _build(tmp, lambda: restore_data_dir(OsFileSystem(), tmp, backup, name,
                                                   cluster, voters))
    _install(tmp, final)
    out.report(
        {"data_dir": final, "member": name, "cluster": cluster, "voters": voters,
         "backup_revision": backup.revision, "revision": written.revision,
         "files": written.files, "index": written.index, "term": written.term,
         "ctl_changes": written.ctl_changes},
        [f"restored {args.file} (revision {backup.revision}) into {final}",
         f"member {name} of cluster {cluster}, voters {','.join(sorted(voters))}",
         f"raft snapshot at index {written.index}, term {written.term}",
         f"store revision {written.revision} ({written.ctl_changes} /ctl entries "
         f"rewritten), {written.files} files"])


def recover(args, out):
    from doozertw.cluster.recovery import rebuild_survivor, write_recovered
    from doozertw.persist.fs import OsFileSystem
    name = _names(args.name)[0]
    src = os.path.abspath(args.data_dir)
    final = os.path.abspath(args.out) if args.out else src
    aside = None
    if args.out:
        _refuse_non_empty(final, "--out must name a new directory")
    else:
        aside = f"{src}.before-recover-{time.strftime('%Y%m%dT%H%M%S')}"
        if os.path.lexists(aside):
            raise CommandError(f"{aside} exists; try again in a second")
    fs = OsFileSystem()
    survivor = rebuild_survivor(fs, src, args.cluster, name)
    tmp = f"{final}.recover-tmp"
    written = _build(tmp, lambda: write_recovered(fs, tmp, survivor))
    if aside is not None:
        os.rename(src, aside)
    _install(tmp, final)
    beyond = max(0, written.index - survivor.commit)
    lines = [f"recovered {name} ({survivor.member_id}) of cluster {args.cluster} into "
             f"{final}",
             f"kept store revision {written.revision}, {written.files} files; raft index "
             f"{written.index}, term {written.term}",
             f"replayed {survivor.replayed} log entries after snapshot "
             f"{survivor.snapshot_index} ({beyond} past the last known commit)",
             f"the only voter is now {survivor.member_id}; {written.ctl_changes} /ctl "
             f"entries rewritten"]
    if aside is not None:
        lines.append(f"the old data directory is now {aside}")
    out.report({"data_dir": final, "member": survivor.member_id, "cluster": args.cluster,
                "revision": written.revision, "files": written.files,
                "index": written.index, "term": written.term,
                "replayed": survivor.replayed, "beyond_commit": beyond,
                "old_data_dir": aside, "ctl_changes": written.ctl_changes}, lines)


__all__ = ["COMMANDS", "SYNOPSES", "main", "secret_of"]
