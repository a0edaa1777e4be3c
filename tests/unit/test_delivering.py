"""The outbox against the loopback fake backend: order, exactly-once, fairness, bounds, drain, spool."""
from __future__ import annotations

import io
import json
import sqlite3

import gevent
import msgspec
import pytest
from gevent.event import Event

from painchain_connector.backend import BackendClient
from painchain_connector.delivering import JsonLinesSink, Outbox, Spool
from painchain_connector.delivering.spool import FILENAME
from painchain_connector.metrics import Metrics
from painchain_connector.model import Outgoing
from painchain_connector.settings import Settings
from tests.fakebackend import FakeBackend, wait_for

FAST = {"retry_base": 0.005, "retry_cap": 0.02, "charged_base": 0.005, "charged_cap": 0.02, "warn_interval": 0.02}


@pytest.fixture
def client(backend):
    api = BackendClient(base_url=backend.url, connect_timeout=0.5, read_timeout=2.0, pool_size=8)
    yield api
    api.close()


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def make_outbox(client, metrics):
    made = []

    def make(*, poster=None, spool=None, **overrides):
        tuning = {k: overrides.pop(k) for k in list(overrides) if k in ("retry_base", "retry_cap", "warn_interval", "clock",
                                                                         "sleep", "rng", "charged_base", "charged_cap")}
        settings = Settings(**{"senders": 4, "max_attempts": 3, "outbox_max": 1000, **overrides})
        outbox = Outbox(poster=poster or client, settings=settings, metrics=metrics, spool=spool,
                        **{**FAST, **tuning})
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        outbox.stop(0)


def event(integration_id: str, n: int | str, *, tenant_id: str | None = None, **data) -> Outgoing:
    external_id = f"{integration_id}-{n}"
    body = {
        "title": f"Pod changed {n}",
        "connector": "kubernetes",
        "project": "dev:default",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "integrationId": integration_id,
        "externalId": external_id,
        "data": data,
        "tags": [],
    }
    return Outgoing(tenant_id=tenant_id, integration_id=integration_id, external_id=external_id,
                    payload=msgspec.json.encode(body),  # as to_outgoing encodes it
                    kind="Pod", cluster="dev")


def sample(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def external_ids(backend: FakeBackend, integration_id: str) -> list[str]:
    return [body["externalId"] for body in backend.events_for(integration_id)]


def successful_posts(backend: FakeBackend) -> list[str]:
    return [r.json()["externalId"] for r in backend.received_at("/events") if r.status == 201]


# -- exactly once, in order ----------------------------------------------------------------


def test_backend_down_then_up_delivers_every_event_exactly_once_in_order(backend, make_outbox, metrics):
    backend.add_integration("a")
    backend.add_integration("b")
    backend.down()
    outbox = make_outbox(max_attempts=2)  # refused connections are not charged to events
    outbox.start()
    for n in range(40):
        outbox.put(event("a", n))
        outbox.put(event("b", n))

    wait_for(lambda: sample(metrics, "painchain_events_posted_total", kind="Pod", result="retry") >= 10)
    backend.up()

    wait_for(lambda: outbox.depth == 0)
    assert external_ids(backend, "a") == [f"a-{n}" for n in range(40)]
    assert external_ids(backend, "b") == [f"b-{n}" for n in range(40)]
    posted = successful_posts(backend)
    assert len(posted) == len(set(posted)) == 80  # nothing posted again after it was stored
    assert sample(metrics, "painchain_events_posted_total", kind="Pod", result="dead_letter") == 0


def test_order_within_an_integration_holds_with_many_senders_and_a_slow_backend(backend, make_outbox):
    backend.add_integration("a")
    backend.slow(0.002)
    outbox = make_outbox(senders=8)
    outbox.start()
    for n in range(60):
        outbox.put(event("a", n))

    wait_for(lambda: len(backend.events_for("a")) == 60)
    assert external_ids(backend, "a") == [f"a-{n}" for n in range(60)]


def test_a_duplicate_answer_counts_as_delivered_and_is_not_retried(backend, make_outbox, metrics):
    backend.answer_409_for_duplicates = True
    backend.add_integration("a")
    outbox = make_outbox()
    outbox.start()
    outbox.put(event("a", 1))
    wait_for(lambda: outbox.depth == 0)
    outbox.put(event("a", 1))
    wait_for(lambda: outbox.depth == 0)

    assert [r.status for r in backend.received_at("/events")] == [201, 409]
    assert sample(metrics, "painchain_events_posted_total", kind="Pod", result="duplicate") == 1


# -- bounded retries and fairness -----------------------------------------------------------


def test_a_failing_integration_is_dead_lettered_after_bounded_retries_while_another_keeps_flowing(
    backend, make_outbox, metrics, logs
):
    backend.add_integration("healthy")  # "deleted" is unknown to the backend: it answers 500
    retry_gate = Event()  # the failing queue's backoff lasts until the test opens the gate
    outbox = make_outbox(senders=1, max_attempts=3, sleep=lambda _delay: retry_gate.wait())
    outbox.start()
    for n in range(3):
        outbox.put(event("deleted", n, secret_looking="BODY-MARKER"))
    for n in range(30):
        outbox.put(event("healthy", n))

    # One sender, and the failing queue is waiting for its retry: the other still flows.
    wait_for(lambda: len(backend.events_for("healthy")) == 30)
    assert [r.json()["externalId"] for r in backend.received_at("/events") if r.status == 500] == ["deleted-0"]

    retry_gate.set()
    wait_for(lambda: sample(metrics, "painchain_events_posted_total", kind="Pod", result="dead_letter") == 3)
    attempts = [r.json()["externalId"] for r in backend.received_at("/events") if r.status == 500]
    assert attempts == ["deleted-0"] * 3 + ["deleted-1"] * 3 + ["deleted-2"] * 3
    dead_logs = [r for r in logs if "dead-lettered" in r["message"]]
    assert [r["extra"]["integration"] for r in dead_logs] == ["deleted"] * 3
    assert all(r["extra"]["cluster"] == "dev" for r in dead_logs)
    assert [f"deleted-{n}" in r["message"] for n, r in enumerate(dead_logs)] == [True] * 3
    assert not any("BODY-MARKER" in r["message"] for r in logs)


def test_a_permanent_error_is_dead_lettered_at_once_and_kept_in_the_spool(backend, make_outbox, metrics, tmp_path):
    backend.add_integration("a")
    spool = Spool(tmp_path)
    outbox = make_outbox(spool=spool)
    outbox.start()
    outbox.put(event("a", "huge", blob="x" * 120_000))
    outbox.put(event("a", "fine"))

    wait_for(lambda: external_ids(backend, "a") == ["a-fine"])
    assert len(backend.received_at("/events")) == 2  # one attempt each
    (letter,) = spool.dead_letters()
    assert (letter.row.external_id, letter.status) == ("a-huge", 413)
    assert sample(metrics, "painchain_events_posted_total", kind="Pod", result="dead_letter") == 1


def test_an_event_older_than_max_event_age_is_dead_lettered_after_one_more_failure(backend, make_outbox, metrics):
    now = [1000.0]
    outbox = make_outbox(max_attempts=100, max_event_age=60.0, clock=lambda: now[0])
    outbox.put(event("unknown", 1))
    now[0] += 61
    outbox.start()

    wait_for(lambda: sample(metrics, "painchain_events_posted_total", kind="Pod", result="dead_letter") == 1)
    assert len(backend.received_at("/events")) == 1


def test_two_tenants_headers_never_cross(backend, make_outbox):
    backend.add_integration("of-t1", tenant_id="t1")
    backend.add_integration("of-t2", tenant_id="t2")
    backend.add_integration("self-hosted", tenant_id=None)
    outbox = make_outbox(senders=8)
    outbox.start()
    for n in range(30):
        outbox.put(event("of-t1", n, tenant_id="t1"))
        outbox.put(event("of-t2", n, tenant_id="t2"))
        outbox.put(event("self-hosted", n))

    wait_for(lambda: len(backend.events) == 90)
    owner = {"of-t1": "t1", "of-t2": "t2", "self-hosted": None}
    for request in backend.received_at("/events"):
        assert request.headers.get("x-tenant-id") == owner[request.json()["integrationId"]]
    assert backend.tenant_mismatches() == []


# -- memory bound --------------------------------------------------------------------------


def test_overflow_drops_the_oldest_events_with_a_count_and_the_bound_holds(backend, make_outbox, metrics, logs):
    backend.add_integration("a")
    outbox = make_outbox(outbox_max=10)
    for n in range(25):
        outbox.put(event("a", n))
        assert outbox.depth <= 10
    assert sample(metrics, "painchain_events_dropped_total", reason="overflow") == 15

    outbox.start()
    wait_for(lambda: outbox.depth == 0)
    assert external_ids(backend, "a") == [f"a-{n}" for n in range(15, 25)]
    warnings = wait_for(lambda: [r for r in logs if r["level"].name == "WARNING" and "outbox full" in r["message"]])
    assert len(warnings) == 1 and "15" in warnings[0]["message"]  # one line, not one per event


def test_overflow_is_paid_by_the_storming_integration_not_its_quiet_neighbour(backend, make_outbox):
    backend.add_integration("storm")
    backend.add_integration("quiet")
    outbox = make_outbox(outbox_max=10)
    for n in range(3):
        outbox.put(event("quiet", n))
    for n in range(50):
        outbox.put(event("storm", n))

    outbox.start()
    wait_for(lambda: outbox.depth == 0)
    assert external_ids(backend, "quiet") == ["quiet-0", "quiet-1", "quiet-2"]
    assert external_ids(backend, "storm") == [f"storm-{n}" for n in range(43, 50)]


def test_with_a_spool_overflow_goes_to_disk_and_comes_back_in_order(backend, make_outbox, metrics, tmp_path):
    backend.add_integration("a")
    backend.add_integration("b")
    backend.down()
    spool = Spool(tmp_path / "spool.db")
    outbox = make_outbox(outbox_max=20, spool=spool)
    outbox.start()
    for n in range(200):
        outbox.put(event("a", n))
        if n % 20 == 0:
            outbox.put(event("b", n))
        assert outbox.depth <= 20
        if n % 5 == 0:
            gevent.sleep(0)  # a watch yields between events; the housekeeper spills meanwhile
    wait_for(lambda: outbox.depth <= 10)
    assert spool.pending > 0
    assert sample(metrics, "painchain_events_dropped_total", reason="overflow") == 0

    backend.up()
    wait_for(lambda: outbox.depth == 0 and spool.pending == 0, timeout=10)
    assert external_ids(backend, "a") == [f"a-{n}" for n in range(200)]
    assert external_ids(backend, "b") == [f"b-{n}" for n in range(0, 200, 20)]
    posted = successful_posts(backend)
    assert len(posted) == len(set(posted))


# -- stop, spool, restart -------------------------------------------------------------------


def test_stop_drains_queued_events_before_returning(backend, make_outbox):
    backend.add_integration("a")
    backend.slow(0.001)
    outbox = make_outbox()
    outbox.start()
    for n in range(50):
        outbox.put(event("a", n))

    assert outbox.stop(5.0) == 0
    assert len(backend.events_for("a")) == 50


def test_stop_spools_what_it_could_not_deliver(backend, make_outbox, tmp_path):
    backend.add_integration("a")
    backend.down()
    spool = Spool(tmp_path)
    outbox = make_outbox(spool=spool)
    outbox.start()
    for n in range(20):
        outbox.put(event("a", n))

    assert outbox.stop(0.1) == 0
    assert spool.pending == 20
    assert outbox.depth == 0


def test_stop_without_a_spool_reports_the_events_it_lost(backend, make_outbox, metrics, logs):
    backend.add_integration("a")
    backend.down()
    outbox = make_outbox()
    outbox.start()
    for n in range(5):
        outbox.put(event("a", n))

    assert outbox.stop(0.1) == 5
    assert sample(metrics, "painchain_events_dropped_total", reason="shutdown") == 5
    assert any("5 undelivered events lost" in r["message"] for r in logs)


def test_the_spool_survives_a_restart_and_pending_events_go_first_in_order(backend, make_outbox, tmp_path):
    backend.add_integration("a", tenant_id="t1")
    backend.add_integration("b")
    backend.down()
    path = tmp_path / "spool.sqlite3"
    first_spool = Spool(path)
    first = make_outbox(spool=first_spool, outbox_max=20)
    first.start()
    for n in range(30):
        outbox_item = event("a", n, tenant_id="t1")
        first.put(outbox_item)
        if n < 10:
            first.put(event("b", n))
        gevent.sleep(0)
    assert first.stop(0.05) == 0
    first_spool.close()

    second_spool = Spool(path)
    second = make_outbox(spool=second_spool)
    for n in range(30, 35):  # put by the watches before the outbox even starts
        second.put(event("a", n, tenant_id="t1"))
    backend.up()
    second.start()

    wait_for(lambda: second.depth == 0 and second_spool.pending == 0)
    assert external_ids(backend, "a") == [f"a-{n}" for n in range(35)]
    assert external_ids(backend, "b") == [f"b-{n}" for n in range(10)]
    assert backend.tenant_mismatches() == []


def test_events_spooled_by_the_previous_version_are_posted_after_an_upgrade(backend, make_outbox, tmp_path):
    backend.add_integration("a", tenant_id="t1")
    documents = [event("a", n, tenant_id="t1", note="naïve ☃").body for n in range(3)]
    Spool(tmp_path).close()
    with sqlite3.connect(tmp_path / FILENAME) as db:  # as it wrote them: json.dumps text, ASCII-escaped
        db.executemany(
            "INSERT INTO events (seq, tenant, integration, external_id, body, kind, cluster, attempts, first_seen)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(n + 1, "t1", "a", doc["externalId"], json.dumps(doc), "Pod", "dev", 0, 1000.0)
             for n, doc in enumerate(documents)])
    db.close()
    spool = Spool(tmp_path)
    outbox = make_outbox(spool=spool)
    outbox.start()

    wait_for(lambda: spool.pending == 0 and outbox.depth == 0)
    assert backend.events_for("a") == documents
    assert backend.tenant_mismatches() == []
    spool.close()


def test_retain_integrations_drops_the_events_of_vanished_integrations(backend, make_outbox, metrics, tmp_path):
    backend.add_integration("kept")
    backend.down()
    spool = Spool(tmp_path)
    outbox = make_outbox(spool=spool, outbox_max=20)
    outbox.start()
    for n in range(30):
        outbox.put(event("kept", n))
        outbox.put(event("vanished", n))
        gevent.sleep(0)
    wait_for(lambda: spool.pending > 0)

    dropped_now = outbox.retain_integrations({"kept"})

    assert dropped_now >= 29  # the one in flight (if any) is dropped when its attempt fails
    wait_for(lambda: sample(metrics, "painchain_events_dropped_total", reason="integration_gone") == 30)
    backend.up()
    wait_for(lambda: outbox.depth == 0 and spool.pending == 0)
    assert external_ids(backend, "kept") == [f"kept-{n}" for n in range(30)]
    assert not any(r.json()["integrationId"] == "vanished" for r in backend.received_at("/events"))


def test_retain_integrations_stops_retrying_an_event_in_flight_of_a_vanished_integration(backend, make_outbox,
                                                                                       metrics):
    outbox = make_outbox(senders=1, max_attempts=1000, retry_base=0.01, retry_cap=0.01)
    outbox.start()
    outbox.put(event("vanished", 1))
    wait_for(lambda: len(backend.received_at("/events")) >= 2)

    outbox.retain_integrations(set())

    wait_for(lambda: outbox.depth == 0)
    assert sample(metrics, "painchain_events_dropped_total", reason="integration_gone") == 1
    settled = len(backend.received_at("/events"))
    backend.add_integration("other")
    outbox.put(event("other", 1))
    wait_for(lambda: backend.events_for("other"))
    assert len(backend.received_at("/events")) == settled + 1


# -- local mode ----------------------------------------------------------------------------


def test_local_mode_writes_json_lines_in_order(make_outbox, tmp_path):
    stream = io.StringIO()
    outbox = make_outbox(poster=JsonLinesSink(stream))
    outbox.start()
    for n in range(20):
        outbox.put(event("a", n))

    assert outbox.stop(2.0) == 0
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["externalId"] for line in lines] == [f"a-{n}" for n in range(20)]


def test_local_mode_sink_appends_to_a_file(tmp_path):
    target = tmp_path / "events.jsonl"
    sink = JsonLinesSink(target)
    assert sink.post(event("a", 1)) == "stored"
    sink.close()
    assert json.loads(target.read_text())["externalId"] == "a-1"


def test_local_mode_escapes_what_an_ascii_stream_cannot_write():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    sink = JsonLinesSink(stream)
    item = event("a", 1, note="naïve ☃")
    assert sink.post(item) == "stored"
    line = raw.getvalue().decode("ascii")
    assert line.endswith("\n") and json.loads(line) == item.body


def test_a_backend_answering_503_pauses_delivery_without_charging_any_event(backend, make_outbox, metrics):
    backend.add_integration("a")
    backend.fail_with(503, 40, path="/events")
    outbox = make_outbox(max_attempts=2)
    outbox.start()
    for n in range(5):
        outbox.put(event("a", n))

    wait_for(lambda: outbox.depth == 0, timeout=10)
    assert external_ids(backend, "a") == [f"a-{n}" for n in range(5)]
    assert len([r for r in backend.received_at("/events") if r.status == 503]) == 40
    assert sample(metrics, "painchain_events_posted_total", kind="Pod", result="dead_letter") == 0


def test_retry_after_holds_every_sender_and_charged_retries_are_spaced_with_equal_jitter():
    from painchain_connector.backend import TransientError

    answers = [TransientError("x", status=503, unavailable=True, retry_after=7.0),
               TransientError("y", status=500), TransientError("y", status=500), "stored"]
    posted, slept = [], []

    def poster(item):
        posted.append(item.external_id)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    now = [0.0]

    def sleep(delay):
        slept.append(round(delay, 3))
        now[0] += delay
        gevent.sleep(0)

    outbox = Outbox(poster=poster, settings=Settings(senders=1, max_attempts=3), sleep=sleep, clock=lambda: now[0],
                    rng=lambda: 0.0, retry_base=0.5, retry_cap=30, charged_base=4.0, charged_cap=300.0)
    outbox.start()
    try:
        outbox.put(event("a", 1))
        wait_for(lambda: outbox.depth == 0)
    finally:
        outbox.stop(0)
    # 503 + Retry-After: 7 s for everyone, no attempt charged; then two 500s: 2 s, 4 s (equal jitter, rng 0)
    assert posted == ["a-1"] * 4
    assert [d for d in slept if d] == [7.0, 2.0, 4.0]
