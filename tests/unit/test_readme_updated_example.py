"""The Updated event the README shows in full is what the connector posts for that update."""
from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from painchain_connector.detecting import detect, project
from painchain_connector.model import DetectContext, Route
from painchain_connector.schemas.event import to_outgoing

README = Path(__file__).resolve().parents[2] / "README.md"


def _api(generation, rv, image, memory, log_level, written):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop", "uid": "5b2f7c1e-8d4a-4e59-9a61-0c3b7d2e9f10",
                     "resourceVersion": rv, "generation": generation, "creationTimestamp": "2026-11-02T09:12:40Z",
                     "labels": {"app": "api", "team": "shop"},
                     "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1",
                                        "time": written}]},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{
                     "name": "main", "image": image,
                     "env": [{"name": "LOG_LEVEL", "value": log_level},
                             {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "api-db", "key": "password"}}}],
                     "resources": {"limits": {"memory": memory}}}]}}},
        "status": {"observedGeneration": generation - 1, "replicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                   "updatedReplicas": 3},
    }


def _updated_event() -> dict:
    old = _api(6, "880411", "nginx:1.20", "256Mi", "info", "2026-11-28T16:40:02Z")
    new = _api(7, "881932", "nginx:1.21", "512Mi", "debug", "2026-11-30T14:01:12Z")
    new["status"] = copy.deepcopy(old["status"])
    ctx = DetectContext(cluster="prod", observed_at=datetime(2026, 11, 30, 14, 1, 13, tzinfo=UTC))
    changes, _ = detect("deployments", project("deployments", old, datetime(2026, 11, 28, 16, 40, 3, tzinfo=UTC)
                                               .timestamp()),
                        project("deployments", new, datetime(2026, 11, 30, 14, 1, 12, 310000, tzinfo=UTC).timestamp()),
                        deleted=False, ctx=ctx)
    assert [c.reason for c in changes] == ["Updated"]
    return to_outgoing(changes[0], Route("cm3x9k2l0000", None, "prod", ("production",))).body


def test_readme_updated_example_is_the_event_the_connector_posts():
    section = README.read_text(encoding="utf-8").split("### One Updated event in full", 1)[1]
    shown = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))
    assert shown == json.loads(json.dumps(_updated_event()))


if __name__ == "__main__":
    print(json.dumps(_updated_event(), indent=2, ensure_ascii=False))
