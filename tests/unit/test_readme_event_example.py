"""The crash-loop event the README shows in full is what the connector posts for that update:
a pod of Deployment `api` (through its ReplicaSet, revision 7) crash-looping two minutes
after the Updated event that rolled `api` out to revision 7."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from painchain_connector.correlating import Correlation, project_owner
from painchain_connector.detecting import detect, project
from painchain_connector.model import DetectContext, Route
from painchain_connector.schemas.event import to_outgoing
from painchain_connector.watching import Store
from tests.unit.test_detecting_deployments import deployment
from tests.unit.test_detecting_pods import pod, running, terminated_state, waiting

README = Path(__file__).resolve().parents[2] / "README.md"


def _at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


POD = "api-7d9f8-xk2lq"
RS_UID = "2b7e4c1a-5555-6666-7777-888899990000"


def _correlation() -> Correlation:
    """The owner index holding ReplicaSet api-7d9f8 (revision 7), and api's rollout to it."""
    correlation = Correlation()
    replica_set = {"metadata": {"uid": RS_UID, "name": "api-7d9f8", "namespace": "shop", "resourceVersion": "48102",
                                "annotations": {"deployment.kubernetes.io/revision": "7"},
                                "ownerReferences": [{"kind": "Deployment", "name": "api", "controller": True,
                                                     "uid": "0d0d0d0d-1111-2222-3333-444455556666"}]}}
    entry = project_owner("replicasets", replica_set)
    correlation.stores[("ReplicaSet", "shop")] = Store({entry.uid: entry})
    old, new = deployment(rv="48090"), deployment(generation=2, image="example.com/app:1.1", rv="48100",
                                                   spec_written="2026-11-30T14:00:02Z")
    for obj in (old, new):
        obj["metadata"].update(name="api", annotations={"deployment.kubernetes.io/revision": "6"}, generation=obj[
            "metadata"]["generation"] + 6)
        obj["spec"]["template"]["spec"]["containers"][0]["name"] = "app"
    new["metadata"]["managedFields"].append({"manager": "argocd", "operation": "Update", "apiVersion": "apps/v1",
                                             "time": "2026-11-30T14:00:02Z", "fieldsV1": {"f:spec": {"f:template": {}}}})
    ctx = DetectContext(cluster="prod", observed_at=datetime(2026, 11, 30, 14, 0, 3, tzinfo=UTC))
    changes, _ = detect("deployments", project("deployments", old, _at("2026-11-30T13:00:00+00:00")),
                        project("deployments", new, _at("2026-11-30T14:00:02.5+00:00")), deleted=False, ctx=ctx)
    correlation.record(changes)
    return correlation


def _named(obj: dict, rv: str) -> dict:
    obj["metadata"].update(name=POD, resourceVersion=rv, labels={"app": "api", "pod-template-hash": "7d9f8"},
                           ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-7d9f8",
                                             "uid": RS_UID, "controller": True, "blockOwnerDeletion": True}])
    obj["spec"]["containers"][0]["image"] = "example.com/app:1.1"  # revision 7's image
    return obj


def _crash_loop_event() -> dict:
    first = terminated_state(1, cid="3f9a0c" * 10 + "d2e1", finished="2026-11-30T14:01:31Z")
    second = terminated_state(1, cid="8b1e44" * 10 + "a0c7", finished="2026-11-30T14:02:05Z")
    back_off = f"back-off 20s restarting failed container=app pod={POD}_shop(6f1c2d3e-1111-2222-3333-444455556666)"
    old = _named(pod(running(restarts=1, last=first)), "48211")
    new = _named(pod(waiting(restarts=2, last=second, message=back_off)), "48377")
    for obj in (old, new):
        for condition in obj["status"]["conditions"]:
            if condition["type"] in ("Ready", "ContainersReady"):
                condition.update(status="False", reason="ContainersNotReady", lastTransitionTime="2026-11-30T14:01:31Z")
    ctx = DetectContext(cluster="prod", observed_at=datetime(2026, 11, 30, 14, 2, 7, tzinfo=UTC),
                        correlation=_correlation())
    changes, _ = detect("pods", project("pods", old, _at("2026-11-30T14:01:53+00:00")),
                        project("pods", new, _at("2026-11-30T14:02:06.412+00:00")), deleted=False, ctx=ctx)
    assert len(changes) == 1
    return to_outgoing(changes[0], Route("cm3x9k2l0000", None, "prod", ("production",))).body


def test_readme_crash_loop_example_is_the_event_the_connector_posts():
    section = README.read_text(encoding="utf-8").split("### One correlated crash-loop event in full", 1)[1]
    shown = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))
    assert shown == json.loads(json.dumps(_crash_loop_event()))
