"""The on-disk spool: one SQLite file under STATE_DIR that outlives the process.

Owns three tables:
- `events`: events waiting for delivery, keyed by `seq` (the outbox's put order, so
  per-integration order survives a restart); rows are deleted once delivered or dropped.
  `body` is the event's JSON document as TEXT, written and read back as the payload's
  bytes without parsing; every version of the connector reads every other's rows.
- `dead_letters`: events given up on, with the status and reason (kept for inspection,
  bounded to the newest DEAD_LETTER_KEEP rows).
- `watch_state`: the watch engine's resourceVersion and store snapshot per watch key.

stdlib sqlite3 in WAL mode with synchronous=NORMAL: a committed row survives a process
crash (an OS crash may lose the last transactions). sqlite3 calls block the whole process
(they do not yield to gevent) but each transaction is small; because they never yield,
no other greenlet can interleave inside one method call. Starts no greenlets.

How it fails: methods raise sqlite3.Error (disk full, I/O error); callers decide. A file
that is not a database is moved aside (`<name>.corrupt-<epoch>`) and a new one created,
with an error logged, rather than keeping the connector from starting.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._log import logger

from ..model import Outgoing

FILENAME = "painchain-spool.sqlite3"
DEAD_LETTER_KEEP = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT,
    integration TEXT NOT NULL,
    external_id TEXT NOT NULL,
    body TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    cluster TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_queue ON events (integration, tenant, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT,
    integration TEXT NOT NULL,
    external_id TEXT NOT NULL,
    body TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    cluster TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    failed_at REAL NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS watch_state (
    key TEXT PRIMARY KEY,
    resource_version TEXT NOT NULL,
    store BLOB,
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class SpoolRow:
    """One spooled event: the outgoing item plus its delivery bookkeeping."""

    seq: int
    tenant_id: str | None
    integration_id: str
    external_id: str
    payload: bytes  # the document as posted (Outgoing.payload)
    kind: str = ""
    cluster: str = ""
    attempts: int = 0
    first_seen: float = 0.0

    @classmethod
    def of(cls, item: Outgoing, *, seq: int, attempts: int, first_seen: float) -> SpoolRow:
        return cls(seq, item.tenant_id, item.integration_id, item.external_id, item.payload, item.kind,
                   item.cluster, attempts, first_seen)

    def outgoing(self) -> Outgoing:
        return Outgoing(tenant_id=self.tenant_id, integration_id=self.integration_id,
                        external_id=self.external_id, payload=self.payload, kind=self.kind, cluster=self.cluster)

    @property
    def body(self) -> dict[str, Any]:
        """The document decoded, for inspection (dead letters, tests)."""
        return self.outgoing().body


@dataclass(frozen=True)
class DeadLetter:
    row: SpoolRow
    failed_at: float
    status: int | None
    reason: str


class Spool:
    """The spool file. `path` is the file, or a directory (STATE_DIR) to hold FILENAME."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            logger.error("spool {} is unusable ({}); moved aside to {}, starting empty", path, exc, aside.name)
            for suffix in ("", "-wal", "-shm"):
                extra = Path(str(path) + suffix)
                if extra.exists():
                    extra.rename(Path(str(aside) + suffix))
            self._db = self._open(path)
        (self._pending,) = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
        self._dead_inserts = 0

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        # isolation_level=None: autocommit; batches use explicit BEGIN/COMMIT.
        # check_same_thread=False: greenlets share one thread anyway; a host calling close()
        # from another thread at exit must not fail.
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- events -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Rows in `events` (kept as a counter: COUNT(*) is a table scan)."""
        return self._pending

    def last_seq(self) -> int:
        """The highest seq ever used (0 for a new file); the outbox continues after it."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        (top,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return max(top, row[0] if row else 0)

    def put_events(self, rows: Sequence[SpoolRow]) -> int:
        """Insert rows in one transaction; rows whose seq is already there are left as they are.
        Returns how many were new."""
        if not rows:
            return 0
        before = self._db.total_changes
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO events (seq, tenant, integration, external_id, body, kind, cluster,"
                " attempts, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.seq, r.tenant_id, r.integration_id, r.external_id, _text(r.payload), r.kind, r.cluster,
                  r.attempts, r.first_seen) for r in rows],
            )
        added = self._db.total_changes - before
        self._pending += added
        return added

    def pending_queues(self) -> list[tuple[str | None, str, int]]:
        """(tenant, integration, rows) of every queue with spooled rows, oldest queue first."""
        return [
            (tenant, integration, count)
            for tenant, integration, count, _ in self._db.execute(
                "SELECT tenant, integration, COUNT(*), MIN(seq) FROM events GROUP BY integration, tenant"
                " ORDER BY MIN(seq)"
            )
        ]

    def load(self, tenant_id: str | None, integration_id: str, *, after: int, limit: int) -> list[SpoolRow]:
        """The next `limit` rows of one queue with seq > after, in seq order (rows stay until deleted)."""
        cursor = self._db.execute(
            "SELECT seq, tenant, integration, external_id, body, kind, cluster, attempts, first_seen FROM events"
            " WHERE integration = ? AND tenant IS ? AND seq > ? ORDER BY seq LIMIT ?",
            (integration_id, tenant_id, after, limit),
        )
        return [SpoolRow(seq, t, i, e, _payload(body), k, c, a, f) for seq, t, i, e, body, k, c, a, f in cursor]

    def delete(self, seqs: Iterable[int]) -> int:
        seqs = list(seqs)
        if not seqs:
            return 0
        with self._transaction():
            cursor = self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
        self._pending -= cursor.rowcount
        return cursor.rowcount

    def delete_integration(self, integration_id: str) -> int:
        cursor = self._db.execute("DELETE FROM events WHERE integration = ?", (integration_id,))
        self._pending -= cursor.rowcount
        return cursor.rowcount

    # -- dead letters -------------------------------------------------------------------

    def add_dead_letter(self, row: SpoolRow, *, status: int | None, reason: str, failed_at: float | None = None) -> None:
        self._db.execute(
            "INSERT INTO dead_letters (tenant, integration, external_id, body, kind, cluster, attempts, first_seen,"
            " failed_at, status, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.tenant_id, row.integration_id, row.external_id, _text(row.payload), row.kind, row.cluster,
             row.attempts, row.first_seen, time.time() if failed_at is None else failed_at, status, reason),
        )
        self._dead_inserts += 1
        if self._dead_inserts % 100 == 0:
            self._db.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?", (DEAD_LETTER_KEEP,)
            )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first."""
        cursor = self._db.execute(
            "SELECT id, tenant, integration, external_id, body, kind, cluster, attempts, first_seen, failed_at,"
            " status, reason FROM dead_letters ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            DeadLetter(SpoolRow(id_, t, i, e, _payload(body), k, c, a, f), failed_at, status, reason)
            for id_, t, i, e, body, k, c, a, f, failed_at, status, reason in cursor
        ]

    def dead_letter_count(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        return count

    # -- watch state --------------------------------------------------------------------

    def save_watch_state(self, key: str, resource_version: str, blob: bytes) -> None:
        self._db.execute(
            "INSERT INTO watch_state (key, resource_version, store, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET resource_version = excluded.resource_version,"
            " store = excluded.store, updated_at = excluded.updated_at",
            (key, resource_version, sqlite3.Binary(blob), time.time()),
        )

    def load_watch_state(self, key: str) -> tuple[str, bytes] | None:
        row = self._db.execute("SELECT resource_version, store FROM watch_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]) if row[1] is not None else b"")

    def delete_watch_state(self, key: str) -> None:
        self._db.execute("DELETE FROM watch_state WHERE key = ?", (key,))

    def delete_watch_states_before(self, cutoff: float, *, keep: Iterable[str]) -> int:
        """Drop the states last saved before `cutoff` (epoch seconds), except `keep` (the
        running watches: an idle watch is not re-saved). Returns how many were dropped."""
        keep = set(keep)
        stale = [k for (k,) in self._db.execute("SELECT key FROM watch_state WHERE updated_at < ?", (cutoff,))
                 if k not in keep]
        for key in stale:
            self.delete_watch_state(key)
        return len(stale)

    # -- plumbing -----------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def _text(payload: bytes) -> str:
    """The `body` column as every version writes it: TEXT (a BLOB would not be JSON to an
    older version reading this file after a downgrade)."""
    return payload.decode()


def _payload(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type, *_rest) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
