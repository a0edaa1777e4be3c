"""Decoding what an apiserver sends into the typed shapes of objects.py."""
import json

import pytest

from painchain_connector import detecting
from painchain_connector.objects import (
    Malformed, Pod, Service, Status, Workload, decode_event, decode_list, shaped,
)


def _line(event_type: str, obj: dict) -> bytes:
    return json.dumps({"type": event_type, "object": obj}).encode()


POD = {
    "kind": "Pod", "apiVersion": "v1",
    "metadata": {"name": "web-1", "namespace": "prod", "uid": "u-1", "resourceVersion": "42",
                 "labels": {"app": "web"}, "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
                 "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9c", "controller": True, "uid": "x"}]},
    "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "web:1", "env": [{"name": "A", "value": "b"}]}]},
    "status": {"phase": "Running", "podIP": "10.0.0.1",
               "containerStatuses": [{"name": "main", "ready": True, "restartCount": 2, "state": {"running": {}},
                                      "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-30T10:00:00Z",
                                                                   "containerID": "containerd://abc"}}}]},
}


def test_a_watch_line_decodes_into_the_pod_shape_with_only_the_declared_fields():
    event = decode_event(_line("MODIFIED", POD), Pod)
    pod = event.object
    assert event.type == "MODIFIED" and isinstance(pod, Pod)
    assert (pod.metadata.name, pod.metadata.resource_version, pod.metadata.labels) == ("web-1", "42", {"app": "web"})
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    status = pod.status.container_statuses[0]
    assert (status.restart_count, status.last_state.terminated.exit_code) == (2, 1)
    assert status.last_state.terminated.container_id == "containerd://abc"
    assert not hasattr(pod.metadata, "managed_fields") and not hasattr(pod.status, "pod_ip")  # skipped, never built


def test_the_typed_object_projects_exactly_as_its_plain_map():
    decoded = decode_event(_line("ADDED", POD), Pod).object
    assert detecting.project("pods", decoded, 5.0) == detecting.project("pods", POD, 5.0)


def test_an_error_event_carries_a_status_even_when_it_would_fit_the_shape():
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": "too old resource version", "reason": "Expired", "code": 410}
    for shape in (Pod, Service, Workload, dict):
        event = decode_event(_line("ERROR", status), shape)
        assert event.type == "ERROR" and event.object == Status(code=410, reason="Expired",
                                                                message="too old resource version")


def test_a_bookmark_decodes_to_its_resource_version():
    event = decode_event(_line("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "77"}}), Pod)
    assert event.type == "BOOKMARK" and event.object.metadata.resource_version == "77"


def test_a_line_that_is_not_json_is_malformed():
    with pytest.raises(Malformed) as caught:
        decode_event(b'{"type": "ADDED", "object": {', Pod)
    assert caught.value.not_json


def test_a_wrongly_typed_field_names_its_path_and_never_its_value():
    obj = {"metadata": {"name": "x"}, "status": {"containerStatuses": [{"restartCount": "sk-live-1234567890abcdef"}]}}
    with pytest.raises(Malformed) as caught:
        decode_event(_line("MODIFIED", obj), Pod)
    message = str(caught.value)
    assert not caught.value.not_json
    assert "restartCount" in message and "Pod" in message
    assert "sk-live" not in message


def test_null_is_accepted_wherever_kubernetes_may_send_it():
    obj = {"metadata": {"name": "x", "labels": None, "ownerReferences": None},
           "spec": {"containers": None}, "status": {"conditions": None, "containerStatuses": None}}
    pod = decode_event(_line("ADDED", obj), Pod).object
    assert pod.metadata.labels is None and detecting.project("pods", pod).containers == ()


def test_a_list_page_decodes_its_items_and_continue_token():
    body = json.dumps({"kind": "PodList", "metadata": {"resourceVersion": "9", "continue": "tok"},
                       "items": [POD, POD]}).encode()
    page = decode_list(body, Pod)
    assert (page.metadata.resource_version, page.metadata.continue_) == ("9", "tok")
    assert [p.metadata.name for p in page.items] == ["web-1", "web-1"]
    with pytest.raises(Malformed):
        decode_list(b"[]", Pod)


def test_plain_maps_are_converted_and_structs_pass_through():
    pod = shaped(POD, Pod)
    assert isinstance(pod, Pod) and shaped(pod, Pod) is pod


def test_an_object_nested_too_deeply_is_malformed_not_a_crash():
    deep = b'{"type":"ADDED","object":{"spec":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}}"
    with pytest.raises(Malformed, match="nested too deeply"):
        decode_event(deep, Workload)
    with pytest.raises(Malformed, match="nested too deeply"):
        decode_list(b'{"items":[{"spec":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}]}", Workload)


def test_a_number_beyond_int64_does_not_fit_the_shape():
    obj = {"metadata": {"name": "x"}, "status": {"containerStatuses": [{"restartCount": 10**25}]}}
    with pytest.raises(Malformed, match="restartCount"):
        decode_event(_line("MODIFIED", obj), Pod)


def test_an_unreadable_workload_spec_is_that_watchs_server_error_not_a_crash():
    from gevent import sleep

    from painchain_connector.clusters import ListerWatcher, ServerError
    from painchain_connector.metrics import Metrics
    from painchain_connector.model import WatchKey
    from painchain_connector.watching import Reflector, WatchTiming

    reflector = Reflector(key=WatchKey("i", "c", "deployments", "ns"), emit=lambda changes: None,
                          lister_watcher=ListerWatcher(None, path="/apis/apps/v1/deployments", connect_timeout=1),
                          timing=WatchTiming(), metrics=Metrics(), sleep=sleep)
    for spec in ({"replicas": 10**25}, {"template": {"spec": {"containers": [{"name": "c", "ports": [2**70]}]}}},
                 {"strategy": "not a map"}):
        obj = decode_event(_line("ADDED", {"metadata": {"uid": "u", "name": "d"}, "spec": spec}), Workload).object
        with pytest.raises(ServerError, match="deployments object that cannot be read"):
            reflector.apply("ADDED", obj)


def test_an_error_status_with_a_string_code_still_means_gone():
    from painchain_connector.clusters import Gone
    from painchain_connector.watching import _watch_error

    event = decode_event(_line("ERROR", {"kind": "Status", "code": "410", "message": "too old"}), Pod)
    assert isinstance(_watch_error(event.object), Gone)


def test_events_k8s_io_spelling_and_empty_owner_references_read_as_before():
    event = detecting.project("events", {"metadata": {"uid": "e"}, "type": "Warning", "reason": "X",
                                         "involvedObject": {}, "regarding": {"kind": "Node", "name": "n2"}})
    assert event.involved == ("Node", "n2", "")
    assert detecting.project("pods", {"metadata": {"uid": "p", "ownerReferences": [{}]}}).owner is None
