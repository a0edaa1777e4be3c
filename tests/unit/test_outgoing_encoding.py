"""The outgoing document: how a detected change becomes the POST /events body.

`to_outgoing` encodes with msgspec; `schema_document` is the same event through the
marshmallow schema that defines it (and publishes schemas/event.schema.json). Every kind of
change the detectors and the reporter produce is run through both, from real detection.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from painchain_connector.detecting import detect, project
from painchain_connector.model import Route
from painchain_connector.reporting import _WORDS, Problem, problem_event
from painchain_connector.schemas.event import PainChainEventSchema, iso_utc, schema_document, to_outgoing
from tests.unit import test_detecting_correlation as correlated
from tests.unit import test_detecting_daemonsets as daemonsets
from tests.unit import test_detecting_deployments as deployments
from tests.unit import test_detecting_events as events
from tests.unit import test_detecting_pods as pods
from tests.unit import test_detecting_services as services
from tests.unit import test_detecting_statefulsets as statefulsets

ROUTES = (Route("cm3x9k2l0000", "tenant-1", "prod", ("production", "eu")), Route("int-1", None, "dev"))
# Text JSON encoders disagree on most: non-ASCII, astral characters, the separators U+2028/9,
# control characters, quotes and backslashes (json.dumps escapes them, msgspec writes UTF-8).
AWKWARD = 'naïve ☃ 🚀 \u2028\u2029 \x00\x1f\t "quoted" \\ </script>'

EVERY_KIND = {
    ("Pod", reason) for reason in ("Created", "Deleted", "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                                   "Terminated", "Restarted", "Failed", "Evicted")
} | {
    ("Deployment", reason) for reason in ("Created", "Deleted", "Scaled", "Updated", "RolloutStuck", "RolloutComplete")
} | {("StatefulSet", reason) for reason in ("Created", "Deleted", "Scaled", "Updated")} | {
    ("DaemonSet", reason) for reason in ("Created", "Deleted", "Updated")
} | {("Service", "Created"), ("Service", "Deleted"), ("Event", "BackOff"), ("Event", "Pulled"),
     ("Integration", "ProblemStarted"), ("Integration", "ProblemResolved")}


def _pod_changes():
    crash = pods.terminated_state(1, cid="b2" * 32, finished="2024-05-01T11:05:00Z")
    oom = dict(pods.terminated_state(137, reason="OOMKilled", signal=9), message=AWKWARD)
    pending = pods.pod(pods.waiting(reason="ContainerCreating"), phase="Pending")
    yield from pods.step(None, pods.pod(pods.running()))[0]
    yield from pods.step(pods.pod(pods.running(restarts=1)), pods.pod(pods.waiting(restarts=2, last=crash), rv="101"))[0]
    yield from pods.step(pending, pods.pod(pods.waiting(reason="ErrImagePull", message=AWKWARD), phase="Pending",
                                           rv="101"))[0]
    yield from pods.step(pending, pods.pod(pods.waiting(reason="ImagePullBackOff"), phase="Pending", rv="102"))[0]
    yield from pods.step(pods.pod(pods.running()), pods.pod(pods.terminated(code=137, reason="OOMKilled", signal=9),
                                                            rv="101"))[0]
    yield from pods.step(pods.pod(pods.running(restarts=2)), pods.pod(pods.running(restarts=3), rv="101"))[0]
    yield from pods.step(pods.pod(pods.running(restarts=2)), pods.pod(pods.running(restarts=3, last=oom), rv="101"))[0]
    yield from pods.step(pods.pod(pods.running()), pods.pod(pods.terminated(code=0, reason="Completed"),
                                                            phase="Failed", rv="101"))[0]
    yield from pods.step(pods.pod(pods.running()), pods.pod(pods.terminated(code=0, reason="Completed"), phase="Failed",
                                                            reason="Evicted", message=AWKWARD, rv="101"))[0]
    yield from pods.step(pods.pod(pods.running()), pods.pod(pods.running(), deleting="2024-05-01T12:00:30Z", rv="200"),
                         deleted=True)[0]
    yield from pods.step(pods.pod(pods.running()), None, deleted=True)[0]
    # Truncated data (markers, ...Truncated/...Total) and a pod with many containers.
    huge, labels = "x" * 200_000, {f"label-{i}": "v" * 63 for i in range(500)}
    yield from pods.step(pods.pod(*[pods.running(f"c{i}") for i in range(30)], labels=labels),
                         pods.pod(*[pods.waiting(f"c{i}", message=huge) for i in range(30)], phase="Failed",
                                  reason="Evicted", message=huge, labels=labels))[0]


def _workload_changes():
    run, deployment = deployments.run, deployments.deployment
    stuck = ("False", "ProgressDeadlineExceeded", "2024-05-02T11:10:00Z", "2024-05-02T11:10:00Z")
    yield from run(deployment(observed=0, ready=0, available=0, updated=0, current=0, progressing=None), start_new=True)[0]
    yield from run(deployment(), deployment(generation=3, replicas=5, image="example.com/web:2.0", observed=1,
                                            rv="150"))[0]
    yield from run(deployment(), deployment(generation=2, observed=1, restarted_at="2024-05-02T11:00:00Z",
                                            strategy={"type": "Recreate"}, env=3, rv="101"))[0]
    yield from run(deployment(generation=2, image="x:9", progressing=deployments.IN_PROGRESS, updated=1, current=4),
                   deployment(generation=2, image="x:9", progressing=stuck, updated=1, current=4, rv="101"))[0]
    yield from run(deployment(generation=4, progressing=deployments.IN_PROGRESS, updated=1, current=4),
                   deployment(generation=4, progressing=deployments.DONE, rv="101"))[0]
    yield from detect("deployments", project("deployments", deployment()), None, deleted=True, ctx=deployments.CTX)[0]
    sts = statefulsets.statefulset
    yield from statefulsets.step(None, sts(ready=0, current=0, updated=0))[0]
    yield from statefulsets.step(sts(), sts(generation=2, replicas=5, rv="101", spec_written="2024-05-02T11:00:00Z"))[0]
    yield from statefulsets.step(sts(), sts(generation=2, image="example.com/db:16", rv="101"))[0]
    yield from statefulsets.step(sts(), None, deleted=True)[0]
    ds = daemonsets.daemonset
    yield from daemonsets.step(None, ds(ready=0, unavailable=4))[0]
    yield from daemonsets.step(ds(), ds(generation=2, image="example.com/agent:2", rv="101"))[0]
    yield from daemonsets.step(ds(), ds(rv="200"), deleted=True)[0]


def _other_changes():
    many_ports = [{"name": f"p{i}", "port": 1000 + i, "targetPort": 1000 + i, "protocol": "TCP"} for i in range(100)]
    yield from detect("services", None, project("services", services.service()), deleted=False, ctx=services.CTX)[0]
    yield from detect("services", project("services", services.service(ports=many_ports)), None, deleted=True,
                      ctx=services.CTX)[0]
    yield from events.feed(events.event(message=AWKWARD))[0]
    yield from events.feed(events.event(type_="Normal", reason="Pulled"))[0]
    yield from events.feed(events.series_event())[0]
    yield from events.feed(events.event(message="m" * 1_000_000))[0]
    # Correlated: the owner, the rollout a crash follows, who changed it.
    correlation = correlated.indexed(("ReplicaSet", correlated.owner_object(
        correlated.RS_UID, "web-7d9f", ("Deployment", "web"), "2")))
    yield correlated.rollout_update(correlation)
    yield from correlated.crash(correlated.DEPLOYMENT_POD, context=correlated.ctx(correlation))


def _problem_events():
    """(change, project) of every problem the reporter posts, started and resolved."""
    for kind in _WORDS:
        cluster = None if kind == "config" else "prod"
        problem = Problem("cm3x9k2l0000", kind, cluster, f"{kind}: {AWKWARD}")
        for resolved in (False, True):
            yield problem_event(problem, now=1_780_000_000.25, hour=494_444, resolved=resolved)


def _every_event():
    for change in (*_pod_changes(), *_workload_changes(), *_other_changes()):
        yield change, None
    yield from _problem_events()


def test_the_encoded_document_equals_the_schemas_on_every_kind_of_event_and_validates():
    schema, seen = PainChainEventSchema(), set()
    for change, project_ in _every_event():
        for route in ROUTES:
            item = to_outgoing(change, route, project=project_)
            sent = json.loads(item.payload)
            reference = schema_document(change, route, project=project_)
            assert sent == json.loads(json.dumps(reference)), change.title
            assert list(sent) == list(reference)  # same field order as well
            assert schema.load(sent)["external_id"] == change.external_id  # raises ValidationError if invalid
            assert (item.tenant_id, item.integration_id, item.external_id, item.kind) == (
                route.tenant_id, route.integration_id, change.external_id, change.kind)
            seen.add((change.kind, change.reason))
    assert seen >= EVERY_KIND, EVERY_KIND - seen


def test_timestamps_are_sent_in_utc_with_milliseconds_whatever_their_zone():
    at = datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=timezone.utc)
    assert iso_utc(at) == "2026-01-02T03:04:05.678Z"  # truncated, never rounded into the next second
    assert iso_utc(at.replace(tzinfo=None)) == "2026-01-02T03:04:05.678Z"  # naive means UTC
    assert iso_utc(at.astimezone(timezone(timedelta(hours=-5, minutes=-30)))) == "2026-01-02T03:04:05.678Z"
    assert iso_utc(datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1)))) == "2027-01-01T00:30:00.000Z"
