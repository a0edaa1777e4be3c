"""Service detection: Created and Deleted only."""
from __future__ import annotations

from datetime import UTC, datetime

from painchain_connector.detecting import detect, project
from painchain_connector.model import DetectContext

OBSERVED = datetime(2024, 5, 2, 12, 0, 0, tzinfo=UTC)
CTX = DetectContext(cluster="prod", observed_at=OBSERVED)
UID = "5e7e1ce0-1111-2222-3333-444455556666"


def service(*, rv="100", service_type="NodePort", ports=None, labels=None):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop", "uid": UID, "resourceVersion": rv,
                     "creationTimestamp": "2024-05-01T09:00:00Z", "labels": labels or {"app": "api"}},
        "spec": {
            "type": service_type,
            "clusterIP": "10.96.0.12",
            "ports": ports if ports is not None else [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}
            ],
            "selector": {"app": "api"},
        },
        "status": {"loadBalancer": {}},
    }


def test_new_service_reports_created_with_type_ip_and_ports():
    changes, state = detect("services", None, project("services", service()), deleted=False, ctx=CTX)
    assert [(c.title, c.kind, c.reason, c.namespace) for c in changes] == [("Service Created: api", "Service", "Created", "shop")]
    data = changes[0].data
    assert data == {
        "summary": "Service api created: NodePort 10.96.0.12, 1 port", "reason": "Created",
        "name": "api", "namespace": "shop", "type": "NodePort", "clusterIP": "10.96.0.12",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}],
        "portsSummary": "http 80→http/TCP (node 30080)",
        "labels": {"app": "api"},
    }
    assert changes[0].timestamp == datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
    assert changes[0].external_id == f"k8s:prod:Service:shop/api:{UID}:Created"
    assert (state.uid, state.name, state.namespace, state.resource_version) == (UID, "api", "shop", "100")


def test_service_edits_report_nothing():
    edited = service(rv="101", service_type="ClusterIP", ports=[{"port": 8080, "protocol": "TCP"}], labels={"app": "x"})
    assert detect("services", project("services", service()), project("services", edited), deleted=False, ctx=CTX)[0] == []


def test_deleted_service_reports_deleted_with_many_ports_bounded():
    ports = [{"name": f"p{i}", "port": 1000 + i, "targetPort": 1000 + i, "protocol": "TCP"} for i in range(100)]
    changes, state = detect("services", project("services", service(ports=ports)), None, deleted=True, ctx=CTX)
    assert [c.title for c in changes] == ["Service Deleted: api"] and state is None
    assert len(changes[0].data["ports"]) == 20 and changes[0].data["portsTruncated"] is True
    assert changes[0].timestamp == OBSERVED
