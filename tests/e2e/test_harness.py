"""The test harness itself, proven against the real apiserver: what the connector's e2e
tests rely on (watch events through the proxy, cuts, stalls, 410s, RBAC, kubeconfig)
really happens, and the apiserver facts they build on hold."""
from __future__ import annotations

import time

import gevent
import pytest
import requests
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.envtest.builders import (make_daemonset, make_deployment, make_event, make_pod,
                                    make_service, make_statefulset)
from tests.envtest.fixtures import gone_event, wait_for
from tests.envtest.kube import KubeError

pytestmark = pytest.mark.e2e

# What a cut or a stall looks like to a requests-based watch reader.
STREAM_BROKEN = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                 StopIteration)


def next_event(stream, *, timeout: float = 10.0, types=("ADDED", "MODIFIED", "DELETED", "ERROR")) -> dict:
    """The next watch event of one of `types` (bookmarks skipped by default)."""
    with gevent.Timeout(timeout, AssertionError(f"no {types} event within {timeout}s")):
        for event in stream:
            if event["type"] in types:
                return event
    raise AssertionError("the watch ended")


def events_until(stream, name: str, last_type: str, *, timeout: float = 15.0) -> list[dict]:
    """The events about object `name`, read until one of type `last_type`."""
    seen = []
    with gevent.Timeout(timeout, AssertionError(f"{name}: no {last_type} in {[e['type'] for e in seen]}")):
        while not seen or seen[-1]["type"] != last_type:
            event = next_event(stream, timeout=timeout)
            if event["object"]["metadata"].get("name") == name:
                seen.append(event)
    return seen


def _event_fixture(kube, namespace):
    pod = kube.create("pods", namespace, make_pod("involved"))
    return make_event(pod, reason="Pulled", message="image pulled", name="ev-1")


BUILDERS = {
    "pods": lambda kube, ns: make_pod("obj-1"),
    "deployments": lambda kube, ns: make_deployment("obj-1"),
    "statefulsets": lambda kube, ns: make_statefulset("obj-1"),
    "daemonsets": lambda kube, ns: make_daemonset("obj-1"),
    "services": lambda kube, ns: make_service("obj-1"),
    "events": _event_fixture,
}


@pytest.mark.parametrize("plural", list(BUILDERS))
def test_watch_through_proxy_sees_create_update_delete(plural, kube, namespace, proxy):
    body = BUILDERS[plural](kube, namespace)
    name = body["metadata"]["name"]
    since = kube.list(plural, namespace)["metadata"]["resourceVersion"]
    with kube.via(proxy.url).watch(plural, namespace, resource_version=since) as stream:
        assert stream.status_code == 200, stream.error
        kube.create(plural, namespace, body)
        kube.patch(plural, namespace, name, {"metadata": {"labels": {"changed": "yes"}}})
        kube.delete(plural, namespace, name)
        events = events_until(stream, name, "DELETED")
    types = [e["type"] for e in events]
    if plural == "pods":
        # Even a grace-period-0 delete first stamps deletionTimestamp (a MODIFIED),
        # then removes the pod.
        assert types == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
        assert events[2]["object"]["metadata"]["deletionTimestamp"]
    else:
        assert types == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["metadata"]["labels"]["changed"] == "yes"
    assert proxy.accepted >= 1


def test_status_writes_are_watched_like_a_controller_wrote_them(kube, namespace):
    kube.create("deployments", namespace, make_deployment("web", replicas=2))
    since = kube.get("deployments", namespace, "web")["metadata"]["resourceVersion"]
    with kube.watch("deployments", namespace, resource_version=since) as stream:
        kube.patch_status("deployments", namespace, "web",
                          {"status": {"replicas": 2, "readyReplicas": 1, "unavailableReplicas": 1}})
        event = next_event(stream)
    assert event["type"] == "MODIFIED"
    assert event["object"]["status"]["readyReplicas"] == 1


def _live_pod_watch(kube, namespace, proxy, *, read_timeout: float = 30.0):
    """A watch through the proxy that has provably delivered one event."""
    since = kube.list("pods", namespace)["metadata"]["resourceVersion"]
    stream = kube.via(proxy.url).watch("pods", namespace, resource_version=since, read_timeout=read_timeout)
    assert stream.status_code == 200, stream.error
    kube.create("pods", namespace, make_pod(f"live-{proxy.accepted}"))
    assert next_event(stream)["type"] == "ADDED"
    return stream


def test_cut_all_breaks_an_open_watch_at_once(kube, namespace, proxy):
    stream = _live_pod_watch(kube, namespace, proxy)
    assert proxy.cut_all() == 1
    started = time.monotonic()
    with gevent.Timeout(5, AssertionError("the client did not notice the cut")):
        with pytest.raises(STREAM_BROKEN):
            next(stream)
    assert time.monotonic() - started < 2
    assert proxy.open_connections == 0
    stream.close()


def test_cut_one_breaks_only_the_newest_connection(kube, namespace, proxy):
    older = _live_pod_watch(kube, namespace, proxy)
    newer = _live_pod_watch(kube, namespace, proxy)
    assert proxy.open_connections == 2
    assert proxy.cut_one()
    with gevent.Timeout(5, AssertionError("the newest watch did not notice the cut")):
        with pytest.raises(STREAM_BROKEN):
            next(newer)
    kube.create("pods", namespace, make_pod("after-cut"))
    assert events_until(older, "after-cut", "ADDED")
    assert proxy.open_connections == 1
    older.close()
    newer.close()


def test_stall_keeps_the_socket_but_starves_the_reader(kube, namespace, proxy):
    stream = _live_pod_watch(kube, namespace, proxy, read_timeout=1.5)
    proxy.stall()
    kube.create("pods", namespace, make_pod("held-back"))
    started = time.monotonic()
    with gevent.Timeout(10, AssertionError("the read timeout never fired")):
        with pytest.raises(requests.exceptions.ConnectionError):   # urllib3 ReadTimeoutError
            next(stream)
    assert time.monotonic() - started >= 1.4
    assert proxy.open_connections == 1   # the socket stayed open: a stall, not a cut
    stream.close()


def test_unstall_delivers_what_the_stall_held_back(kube, namespace, proxy):
    stream = _live_pod_watch(kube, namespace, proxy)
    proxy.stall()
    kube.create("pods", namespace, make_pod("held-back"))
    held = gevent.spawn(next_event, stream, timeout=20)
    with pytest.raises(gevent.Timeout):   # nothing arrives while stalled
        held.get(timeout=1)
    proxy.unstall()
    assert held.get(timeout=10)["object"]["metadata"]["name"] == "held-back"
    stream.close()


def test_refuse_closes_new_connections_until_resumed(kube, proxy):
    through = kube.via(proxy.url)
    proxy.refuse()
    with pytest.raises(requests.exceptions.ConnectionError):
        through.list("namespaces")
    assert proxy.refused >= 1
    proxy.resume()
    assert through.list("namespaces")["items"]


def test_refuse_for_a_while_ends_by_itself(kube, proxy):
    through = kube.via(proxy.url)
    proxy.refuse(seconds=0.5)

    def works():
        try:
            return bool(through.list("namespaces")["items"])
        except requests.exceptions.ConnectionError:
            return False

    assert not works()
    wait_for(works, timeout=5, message="the proxy to accept again")


def test_latency_delays_each_answer(kube, proxy):
    through = kube.via(proxy.url)
    through.list("namespaces")   # connection and TLS set up before measuring
    proxy.latency(0.3)
    started = time.monotonic()
    through.list("namespaces")
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("plural, cached", [("pods", True), ("events", False)])
def test_force_gone_makes_an_old_resource_version_expire(plural, cached, kube, namespace, force_gone):
    pod = kube.create("pods", namespace, make_pod("p"))
    kube.create("events", namespace, make_event(pod, reason="Created"))
    old = kube.list(plural, namespace)["metadata"]["resourceVersion"]
    kube.patch("pods", namespace, "p", {"metadata": {"labels": {"v": "2"}}})
    kube.create("events", namespace, make_event(pod, reason="Started"))

    status = force_gone(plural, namespace, resource_version=old)

    # 1.20 answers HTTP 200 and one ERROR event, in both cases; only the message differs.
    assert status["code"] == 410 and status["reason"] == "Expired"
    expected = "too old resource version" if cached else "The resourceVersion for the provided watch is too old"
    assert expected in status["message"]
    again = gone_event(kube, plural, namespace, old)
    assert again and again["code"] == 410
    # The current resourceVersion still works: only the past is gone.
    current = kube.list(plural, namespace)["metadata"]["resourceVersion"]
    assert gone_event(kube, plural, namespace, current) is None


def test_force_gone_ends_open_cached_watches_and_their_rewatch_gets_410(kube, namespace, force_gone):
    since = kube.list("pods", namespace)["metadata"]["resourceVersion"]
    stream = kube.watch("pods", namespace, resource_version=since)
    kube.create("pods", namespace, make_pod("p"))
    last = next_event(stream)["object"]["metadata"]["resourceVersion"]

    force_gone("pods", namespace, resource_version=last)

    # The watch cache relisted: it ended every open watch cleanly (no ERROR event)...
    with gevent.Timeout(10, AssertionError("the open watch survived the relist")):
        assert [e["type"] for e in stream] in ([], ["BOOKMARK"])
    # ...and resuming from the last seen resourceVersion is refused.
    with kube.watch("pods", namespace, resource_version=last) as resumed:
        event = next_event(resumed)
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


def test_force_gone_sends_410_into_open_event_watches(kube, namespace, force_gone):
    pod = kube.create("pods", namespace, make_pod("p"))
    since = kube.list("events", namespace)["metadata"]["resourceVersion"]
    stream = kube.watch("events", namespace, resource_version=since)
    kube.create("events", namespace, make_event(pod, reason="Created"))
    assert next_event(stream)["type"] == "ADDED"

    force_gone("events", namespace, resource_version=since)

    # core/v1 Events have no watch cache: the apiserver's etcd watch behind this very
    # stream is the one that resumed into the compaction.
    with gevent.Timeout(10, AssertionError("the open events watch got no ERROR")):
        rest = list(stream)
    assert [(e["type"], e["object"]["code"]) for e in rest] == [("ERROR", 410)]


def test_restricted_token_gets_exactly_its_role(kube, namespace, restricted_token):
    other = kube.create("namespaces", None, {"metadata": {"name": f"{namespace}-other"}})["metadata"]["name"]
    reader = kube.with_token(restricted_token(namespaces=[namespace], resources=["pods", "deployments"]))

    assert reader.list("pods", namespace)["items"] == []
    assert reader.list("deployments", namespace)["items"] == []
    for plural, ns in [("services", namespace), ("pods", other), ("pods", None)]:
        with pytest.raises(KubeError) as denied:
            reader.list(plural, ns)
        assert denied.value.status == 403, (plural, ns)
    with pytest.raises(KubeError) as denied:   # read-only: no create
        reader.create("pods", namespace, make_pod("nope"))
    assert denied.value.status == 403
    with reader.watch("pods", namespace) as stream:
        assert stream.status_code == 200
    kube.delete("namespaces", None, other)


def test_cluster_wide_restricted_token(kube, namespace, restricted_token):
    reader = kube.with_token(restricted_token(resources=["deployments", "events"]))
    assert reader.list("deployments")["kind"] == "DeploymentList"
    assert reader.list("events", namespace)["kind"] == "EventList"
    with pytest.raises(KubeError) as denied:
        reader.list("pods", namespace)
    assert denied.value.status == 403


def test_kubeconfig_contexts_work_with_the_official_client(kube, namespace, kubeconfig, restricted_token, proxy,
                                                            control_plane):
    kube.create("pods", namespace, make_pod("seen"))
    token = restricted_token(namespaces=[namespace], resources=["pods"])
    path = kubeconfig({"admin": control_plane.admin_token, "reader": token}, current="admin")

    reader = client.CoreV1Api(config.new_client_from_config(config_file=path, context="reader"))
    assert [p.metadata.name for p in reader.list_namespaced_pod(namespace).items] == ["seen"]
    with pytest.raises(ApiException) as denied:
        reader.list_namespaced_service(namespace)
    assert denied.value.status == 403

    admin = client.CoreV1Api(config.new_client_from_config(config_file=path))   # current-context
    assert admin.read_namespace(namespace).metadata.name == namespace

    via_proxy = kubeconfig(server=proxy.url, embed_ca=True)
    admin = client.CoreV1Api(config.new_client_from_config(config_file=via_proxy))
    assert admin.list_namespaced_pod(namespace).items
    assert proxy.accepted >= 1


# -- apiserver facts the connector's tests build on -----------------------------------

def test_pods_without_a_node_stay_pending_and_delete_at_once(kube, namespace):
    kube.create("pods", namespace, make_pod("unscheduled", node=None))
    assert kube.get("pods", namespace, "unscheduled")["status"]["phase"] == "Pending"
    kube.delete("pods", namespace, "unscheduled", grace_period_seconds=None)
    with pytest.raises(KubeError) as gone:
        kube.get("pods", namespace, "unscheduled")
    assert gone.value.status == 404


def test_scheduled_pod_deleted_gracefully_stays_terminating(kube, namespace):
    body = make_pod("scheduled")
    del body["spec"]["terminationGracePeriodSeconds"]   # the default 30 s
    kube.create("pods", namespace, body)
    kube.delete("pods", namespace, "scheduled", grace_period_seconds=None)
    # No kubelet confirms the deletion: the pod waits, Terminating, until forced.
    assert kube.get("pods", namespace, "scheduled")["metadata"]["deletionTimestamp"]
    kube.delete("pods", namespace, "scheduled", grace_period_seconds=0)
    with pytest.raises(KubeError):
        kube.get("pods", namespace, "scheduled")


def test_bookmark_arrives_before_timeout_once_the_resource_changed(kube, namespace):
    since = kube.list("pods", namespace)["metadata"]["resourceVersion"]
    with kube.watch("pods", namespace, resource_version=since, timeout_seconds=4) as stream:
        # 1.20 bookmarks carry the newest RV the watch cache saw; one older than the
        # watch's start is dropped, so a quiet resource gets no bookmark at all.
        kube.create("pods", namespace, make_pod("tick"))
        events = list(stream)
    # One or two bookmarks, 1.5-3 s before the timeout (the cacher's bookmark timer
    # ticks every ~1 s and watchers are bucketed by second), none while it was younger.
    assert [e["type"] for e in events][:2] == ["ADDED", "BOOKMARK"]
    assert {e["type"] for e in events[1:]} == {"BOOKMARK"}
    added_rv = events[0]["object"]["metadata"]["resourceVersion"]
    assert {e["object"]["metadata"]["resourceVersion"] for e in events[1:]} == {added_rv}


def test_quiet_watch_gets_no_bookmark(kube, namespace):
    since = kube.list("pods", namespace)["metadata"]["resourceVersion"]
    with kube.watch("pods", namespace, resource_version=since, timeout_seconds=3) as stream:
        assert list(stream) == []
