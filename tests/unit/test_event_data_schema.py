"""The data of real detected changes against the published event schema (schemas/event.schema.json)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from painchain_connector.detecting import detect, project
from painchain_connector.model import Route
from painchain_connector.schemas.event import to_outgoing
from tests.unit import test_detecting_correlation as correlated
from tests.unit import test_detecting_deployments as deployments
from tests.unit import test_detecting_events as events
from tests.unit import test_detecting_pods as pods
from tests.unit import test_detecting_services as services

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "event.schema.json").read_text())


def _changes():
    crash = pods.terminated_state(1, cid="b2" * 32, finished="2024-05-01T11:05:00Z")
    yield from pods.step(pods.pod(pods.running(restarts=1)), pods.pod(pods.waiting(restarts=2, last=crash), rv="101"))[0]
    yield from pods.step(None, pods.pod(pods.running()))[0]
    yield from pods.step(pods.pod(pods.running()), pods.pod(pods.terminated(code=137, signal=9), phase="Failed",
                                                            reason="Evicted", message="low on memory", rv="101"))[0]
    yield from deployments.run(deployments.deployment(),
                               deployments.deployment(generation=2, replicas=5, image="x:2", observed=1, rv="101"))[0]
    yield from detect("services", None, project("services", services.service()), deleted=False, ctx=services.CTX)[0]
    yield from events.feed(events.event())[0]
    yield from deployments.run(deployments.deployment(), start_new=True)[0]
    correlation = correlated.indexed(("ReplicaSet", correlated.owner_object(
        correlated.RS_UID, "web-7d9f", ("Deployment", "web"), "2")))
    correlated.rollout_update(correlation)
    yield from correlated.crash(correlated.DEPLOYMENT_POD, context=correlated.ctx(correlation))


def test_every_kind_of_event_data_matches_the_published_schema_and_reads_in_one_line():
    seen = set()
    for change in _changes():
        body = to_outgoing(change, Route("int-1", None, "prod")).body
        jsonschema.validate(body, SCHEMA)
        summary = body["data"]["summary"]
        assert summary and "\n" not in summary and "None" not in summary, summary
        seen.add(change.reason)
        seen.update(key for key in ("owner", "rollout", "changedBy", "revision") if key in body["data"])
    assert seen >= {"CrashLoopBackOff", "Created", "Evicted", "Scaled", "Updated", "BackOff",
                    "owner", "rollout", "changedBy", "revision"}


def test_a_documented_field_with_the_wrong_type_fails_the_schema():
    body = to_outgoing(next(_changes()), Route("int-1", None, "prod")).body
    body["data"]["exitCode"] = "1"
    try:
        jsonschema.validate(body, SCHEMA)
    except jsonschema.ValidationError:
        return
    raise AssertionError("a string exitCode passed the schema")
