"""The on-disk spool: pending events, dead letters and watch state survive a reopen."""
from __future__ import annotations

import json
import sqlite3

from painchain_connector.delivering.spool import FILENAME, Spool, SpoolRow


def row(seq: int, integration: str = "a", tenant: str | None = None) -> SpoolRow:
    body = {"externalId": f"{integration}-{seq}", "n": seq}
    return SpoolRow(seq, tenant, integration, f"{integration}-{seq}", json.dumps(body).encode(), "Pod", "dev", 1, 1000.0 + seq)


def test_pending_events_survive_a_reopen_and_load_in_order_per_queue(tmp_path):
    with Spool(tmp_path) as spool:
        spool.put_events([row(3), row(1, "b"), row(5), row(7, "b"), row(9)])
    with Spool(tmp_path / FILENAME) as spool:
        assert spool.pending == 5
        assert spool.last_seq() == 9
        assert spool.pending_queues() == [(None, "b", 2), (None, "a", 3)]
        first = spool.load(None, "a", after=0, limit=2)
        assert [r.seq for r in first] == [3, 5]
        assert first[0] == row(3)
        assert [r.seq for r in spool.load(None, "a", after=5, limit=10)] == [9]


def test_rows_already_spooled_are_not_duplicated(tmp_path):
    with Spool(tmp_path) as spool:
        assert spool.put_events([row(1), row(2)]) == 2
        assert spool.put_events([row(2), row(3)]) == 1
        assert spool.pending == 3


def test_tenants_of_one_integration_id_stay_apart(tmp_path):
    with Spool(tmp_path) as spool:
        spool.put_events([row(1, tenant="t1"), row(2), row(3, tenant="t1")])
        assert [r.seq for r in spool.load("t1", "a", after=0, limit=10)] == [1, 3]
        assert [r.seq for r in spool.load(None, "a", after=0, limit=10)] == [2]


def test_delivered_and_vanished_events_are_removed(tmp_path):
    with Spool(tmp_path) as spool:
        spool.put_events([row(1), row(2), row(3, "gone"), row(4, "gone")])
        assert spool.delete([1]) == 1
        assert spool.delete_integration("gone") == 2
        assert spool.pending == 1
    with Spool(tmp_path) as spool:
        assert spool.pending == 1
        assert spool.last_seq() == 4  # seqs are never reused: a restart continues after them


def test_dead_letters_are_kept_with_status_and_reason_newest_first(tmp_path):
    with Spool(tmp_path) as spool:
        spool.add_dead_letter(row(1), status=500, reason="HTTP 500", failed_at=5.0)
        spool.add_dead_letter(row(2), status=413, reason="HTTP 413", failed_at=6.0)
    with Spool(tmp_path) as spool:
        newest, oldest = spool.dead_letters()
        assert (newest.row.external_id, newest.status, newest.reason) == ("a-2", 413, "HTTP 413")
        assert oldest.row.body == {"externalId": "a-1", "n": 1}
        assert spool.dead_letter_count() == 2


def test_rows_are_json_text_that_the_previous_version_reads_after_a_downgrade(tmp_path):
    document = {"externalId": "a-1", "title": "Pod Created: naïve ☃"}
    written = SpoolRow(1, None, "a", "a-1", json.dumps(document, ensure_ascii=False).encode(), "Pod", "dev", 0, 1.0)
    with Spool(tmp_path) as spool:
        spool.put_events([written])
        spool.add_dead_letter(written, status=500, reason="HTTP 500", failed_at=2.0)
    with sqlite3.connect(tmp_path / FILENAME) as db:
        for table in ("events", "dead_letters"):
            ((kind, body),) = db.execute(f"SELECT typeof(body), body FROM {table}").fetchall()  # noqa: S608
            assert kind == "text" and json.loads(body) == document  # what the previous version did with it
    db.close()


def test_watch_state_is_saved_replaced_and_deleted(tmp_path):
    with Spool(tmp_path) as spool:
        assert spool.load_watch_state("i/c/pods/*") is None
        spool.save_watch_state("i/c/pods/*", "100", b"\x00snapshot")
        spool.save_watch_state("i/c/pods/*", "200", b"newer")
    with Spool(tmp_path) as spool:
        assert spool.load_watch_state("i/c/pods/*") == ("200", b"newer")
        spool.delete_watch_state("i/c/pods/*")
        assert spool.load_watch_state("i/c/pods/*") is None


def test_the_spool_uses_write_ahead_logging(tmp_path):
    with Spool(tmp_path):
        (mode,) = sqlite3.connect(tmp_path / FILENAME).execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"


def test_an_unreadable_spool_file_is_moved_aside_and_a_new_one_used(tmp_path):
    (tmp_path / FILENAME).write_bytes(b"this is not a database" * 100)

    with Spool(tmp_path) as spool:
        assert spool.pending == 0
        spool.put_events([row(1)])

    assert [p.name.startswith(FILENAME + ".corrupt-") for p in tmp_path.iterdir()].count(True) == 1
