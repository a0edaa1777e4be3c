"""Detection scenarios on the real apiserver: pods, services, core/v1 Events, churn, externalIds.

Each test runs the real watch engine and plays kubelet by writing `/status`; the marker
technique that proves "nothing was emitted" is in scenarios.py.
Workload kinds are in test_detection_scenarios_workloads.py.
"""
import pytest

from painchain_connector.delivering.spool import Spool
from painchain_connector.metrics import Metrics
from painchain_connector.orchestration import WatchPool, wanted_watches
from tests.e2e.helpers import Collector, fast_timing, start_pool, wait_watching
from tests.e2e.scenarios import (RUNNING, T0, change, container, integration, pod_ref, ready_conditions, set_pod,
                                 settled, terminated, waiting, watching)
from tests.envtest.builders import make_event, make_pod, make_service
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e


# -- pods ---------------------------------------------------------------------------------

def test_pod_is_created_when_it_leaves_pending_and_deleted_when_removed(control_plane, kube, namespace):
    with watching(control_plane, namespace, "pods") as collector:
        kube.create("pods", namespace, make_pod("web"))
        kube.create("pods", namespace, make_pod("unscheduled", node=None))
        assert settled(kube, namespace, collector, "pods") == []  # pending pods are no news
        set_pod(kube, namespace, "web", container(RUNNING, ready=True))
        kube.delete("pods", namespace, "unscheduled")  # never seen beyond Pending: its deletion neither
        kube.delete("pods", namespace, "web")
        assert settled(kube, namespace, collector, "pods") == ["Pod Created: web", "Pod Deleted: web"]
        created = change(collector, "Pod Created: web")
        assert (created.kind, created.reason, created.namespace) == ("Pod", "Created", namespace)
        assert created.data["changed"] == {"phase": {"old": "Pending", "new": "Running"}}
        assert change(collector, "Pod Deleted: web").reason == "Deleted"


def test_crash_loop_is_reported_on_each_entry_not_on_each_status_update(control_plane, kube, namespace):
    with watching(control_plane, namespace, "pods") as collector:
        kube.create("pods", namespace, make_pod("crashy"))
        set_pod(kube, namespace, "crashy", container(RUNNING))
        for backoff in ("10s", "20s", "40s"):  # kubelet rewrites the status while the loop lasts
            set_pod(kube, namespace, "crashy",
                    container(waiting("CrashLoopBackOff", f"back-off {backoff} restarting failed container"), restarts=1))
        set_pod(kube, namespace, "crashy", container(RUNNING, restarts=2))
        set_pod(kube, namespace, "crashy", container(waiting("CrashLoopBackOff", "back-off 80s"), restarts=2))
        # The first entry and its restart (0 → 1) arrive in one status update: one event.
        assert settled(kube, namespace, collector, "pods") == [
            "Pod Created: crashy", "Pod CrashLoopBackOff: crashy",
            "Pod Restarted: crashy (restarts 1 → 2)", "Pod CrashLoopBackOff: crashy"]
        loops = [c for _, c in collector.items if c.reason == "CrashLoopBackOff"]
        assert [c.data["message"] for c in loops] == ["back-off 10s restarting failed container", "back-off 80s"]
        assert loops[0].data["container"] == "main"
        assert (loops[0].data["restartCount"], loops[0].data["previousRestartCount"]) == (1, 0)
        assert loops[0].external_id != loops[1].external_id


def test_crash_with_restart_and_back_off_in_one_status_update_is_one_event(control_plane, kube, namespace):
    first = terminated(1, "Error", cid="containerd://aaaaaaaaaaaa", finished="2024-05-01T10:05:00Z")
    second = terminated(1, "Error", cid="containerd://bbbbbbbbbbbb", finished="2024-05-01T10:06:00Z")
    with watching(control_plane, namespace, "pods") as collector:
        kube.create("pods", namespace, make_pod("crashy"))
        set_pod(kube, namespace, "crashy", container(RUNNING))
        set_pod(kube, namespace, "crashy", container(RUNNING, restarts=1, last=first))
        assert len(settled(kube, namespace, collector, "pods")) == 2  # Created, then the first crash
        # kubelet's one update: it exited 1, the restart count went 1 -> 2, it now backs off
        set_pod(kube, namespace, "crashy", container(
            waiting("CrashLoopBackOff", "back-off 20s restarting failed container"), restarts=2, last=second))
        assert settled(kube, namespace, collector, "pods")[2:] == ["Pod CrashLoopBackOff: crashy"]
        data = change(collector, "Pod CrashLoopBackOff: crashy").data
        assert data["facts"] == ["CrashLoopBackOff", "Terminated", "Restarted"]
        assert (data["reason"], data["exitCode"], data["restartCount"], data["previousRestartCount"]) == (
            "CrashLoopBackOff", 1, 2, 1)
        assert data["summary"] == ("Container main of pod crashy exited with code 1 (Error), restarted (1 → 2 "
                                   "restarts) and is waiting in CrashLoopBackOff: back-off 20s restarting failed "
                                   "container")


def test_image_pull_failure_is_one_change_while_kubelet_alternates_pull_and_backoff(control_plane, kube, namespace):
    with watching(control_plane, namespace, "pods") as collector:
        kube.create("pods", namespace, make_pod("pull", image="registry.example/missing:9.9"))
        for reason in ("ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"):
            set_pod(kube, namespace, "pull", container(waiting(reason, "manifest unknown")), phase="Pending")
        assert settled(kube, namespace, collector, "pods") == ["Pod ErrImagePull: pull"]
        pulled = change(collector, "Pod ErrImagePull: pull")
        assert (pulled.reason, pulled.data["message"]) == ("ErrImagePull", "manifest unknown")


def test_nonzero_termination_is_reported_once_with_exit_code_and_reason(control_plane, kube, namespace):
    with watching(control_plane, namespace, "pods") as collector:
        kube.create("pods", namespace, make_pod("oom"))
        set_pod(kube, namespace, "oom", container(RUNNING, ready=True))
        set_pod(kube, namespace, "oom", container(terminated(137, "OOMKilled")))
        # restarted: the same termination lives on in lastState, twice
        set_pod(kube, namespace, "oom", container(RUNNING, restarts=1, last=terminated(137, "OOMKilled")))
        set_pod(kube, namespace, "oom", container(RUNNING, restarts=1, ready=True, last=terminated(137, "OOMKilled")))
        title = "Pod Container Terminated: oom (main: exit 137, OOMKilled)"
        assert settled(kube, namespace, collector, "pods") == [
            "Pod Created: oom", title, "Pod Restarted: oom (restarts 0 → 1)"]
        termination = change(collector, title).data
        assert (termination["exitCode"], termination["reason"]) == (137, "OOMKilled")
        assert termination["finishedAt"] == "2024-05-01T10:05:00Z"


def test_restart_count_increase_is_reported_and_a_status_update_keeping_it_is_not(control_plane, kube, namespace):
    with watching(control_plane, namespace, "pods") as collector:
        kube.create("pods", namespace, make_pod("r"))
        set_pod(kube, namespace, "r", container(RUNNING, ready=True))
        set_pod(kube, namespace, "r", container(RUNNING, restarts=2))
        set_pod(kube, namespace, "r", container(RUNNING, restarts=2, ready=True))
        assert settled(kube, namespace, collector, "pods") == ["Pod Created: r", "Pod Restarted: r (restarts 0 → 2)"]
        restarted = change(collector, "Pod Restarted: r (restarts 0 → 2)")
        assert restarted.data["changed"] == {"restartCount": {"old": 0, "new": 2}}


def test_eviction_and_failure_are_reported_once_with_the_pods_reason(control_plane, kube, namespace):
    with watching(control_plane, namespace, "pods") as collector:
        for name in ("ev", "dl"):
            kube.create("pods", namespace, make_pod(name))
            set_pod(kube, namespace, name, container(RUNNING, ready=True))
        set_pod(kube, namespace, "ev", phase="Failed", reason="Evicted", message="The node was low on resource: memory.")
        set_pod(kube, namespace, "dl", phase="Failed", reason="DeadlineExceeded", message="Pod was active too long")
        set_pod(kube, namespace, "ev", phase="Failed", conditions=ready_conditions("False", T0))  # later churn
        assert settled(kube, namespace, collector, "pods") == [
            "Pod Created: ev", "Pod Created: dl", "Pod Evicted: ev", "Pod Failed: dl"]
        evicted, failed = change(collector, "Pod Evicted: ev"), change(collector, "Pod Failed: dl")
        assert (evicted.reason, evicted.data["reason"]) == ("Evicted", "Evicted")
        assert evicted.data["message"] == "The node was low on resource: memory."
        assert (failed.reason, failed.data["reason"]) == ("Failed", "DeadlineExceeded")


# -- services -----------------------------------------------------------------------------

def test_service_creation_and_deletion_are_reported_and_edits_are_not(control_plane, kube, namespace):
    with watching(control_plane, namespace, "services") as collector:
        kube.create("services", namespace, make_service("api"))
        kube.patch("services", namespace, "api", {"metadata": {"labels": {"tier": "front"}}})
        kube.patch("services", namespace, "api", {"spec": {"ports": [{"name": "p8080", "port": 8080}]}})
        kube.delete("services", namespace, "api")
        assert settled(kube, namespace, collector, "services") == ["Service Created: api", "Service Deleted: api"]
        assert change(collector, "Service Created: api").data["ports"][0]["port"] == 80


# -- core/v1 Events -----------------------------------------------------------------------

def test_warning_and_listed_normal_events_are_reported_and_other_normal_ones_are_not(control_plane, kube, namespace):
    web = pod_ref(namespace, "web-1")
    with watching(control_plane, namespace, "events") as collector:
        kube.create("events", namespace, make_event(web, reason="BackOff", type="Warning",
                                                    message="Back-off restarting failed container"))
        kube.create("events", namespace, make_event(web, reason="Pulled", message="Successfully pulled image"))
        kube.create("events", namespace, make_event(web, reason="SandboxChanged", message="Pod sandbox changed"))
        assert settled(kube, namespace, collector, "events") == [
            "K8s Event [Warning]: BackOff - Pod/web-1", "K8s Event [Normal]: Pulled - Pod/web-1"]
        backoff = change(collector, "K8s Event [Warning]: BackOff - Pod/web-1")
        assert (backoff.kind, backoff.reason, backoff.data["type"]) == ("Event", "BackOff", "Warning")
        assert backoff.data["message"] == "Back-off restarting failed container"
        assert backoff.data["involvedObject"] == {"kind": "Pod", "name": "web-1", "namespace": namespace}


def test_repeated_event_is_coalesced_within_the_window_and_reported_again_after_it(control_plane, kube, namespace):
    title = "K8s Event [Warning]: BackOff - Pod/web-1"
    with watching(control_plane, namespace, "events") as collector:  # window: 300 s of the Event's own time
        event = kube.create("events", namespace, make_event(pod_ref(namespace, "web-1"), reason="BackOff",
                                                            type="Warning", timestamp=T0))
        for count, stamp in ((2, "2024-05-01T10:00:10Z"), (7, "2024-05-01T10:04:00Z")):
            kube.patch("events", namespace, event["metadata"]["name"], {"count": count, "lastTimestamp": stamp})
        assert settled(kube, namespace, collector, "events") == [title]
        kube.patch("events", namespace, event["metadata"]["name"], {"count": 8, "lastTimestamp": "2024-05-01T10:06:00Z"})
        assert settled(kube, namespace, collector, "events") == [title, title]
        reported = [c for _, c in collector.items if c.title == title]
        assert [c.data["count"] for c in reported] == [1, 8]
        assert reported[0].external_id != reported[1].external_id


# -- what must stay silent, and ids that must stay stable ---------------------------------

def test_routine_pod_churn_and_forced_relists_report_nothing(control_plane, kube, namespace, proxy, force_gone):
    kube.create("pods", namespace, make_pod("steady"))
    set_pod(kube, namespace, "steady", container(RUNNING), conditions=ready_conditions("False", T0))
    collector, metrics = Collector(), Metrics()
    pool, _ = start_pool([integration(control_plane, namespace, "pods", server=proxy.url)],
                         collector=collector, metrics=metrics)
    try:
        wait_watching(pool)
        set_pod(kube, namespace, "steady", podIP="10.1.0.7", podIPs=[{"ip": "10.1.0.7"}])
        for i, ready in enumerate((True, False, True)):
            set_pod(kube, namespace, "steady", container(RUNNING, ready=ready),
                    conditions=ready_conditions(str(ready), f"2024-05-01T10:0{i + 1}:00Z"))
        assert settled(kube, namespace, collector, "pods") == []
        proxy.refuse()
        proxy.cut_all()
        set_pod(kube, namespace, "steady", container(RUNNING, ready=False),
                conditions=ready_conditions("False", "2024-05-01T10:09:00Z"))  # missed: the relist diffs it
        force_gone("pods", namespace)
        proxy.resume()
        wait_for(lambda: metrics.registry.get_sample_value(
            "painchain_watch_restarts_total", {"resource": "pods", "reason": "gone"}), timeout=60, message="a relist")
        # a changed fingerprint restarts the watch with its Store handed over: a second relist
        moved = integration(control_plane, namespace, "pods", server=proxy.url, tags=("e2e", "moved"))
        assert pool.adjust(wanted_watches([moved]))["restarted"] == 1
        wait_watching(pool, timeout=30)
        assert settled(kube, namespace, collector, "pods") == []
    finally:
        proxy.resume()
        pool.stop_all()


def test_external_ids_are_stable_across_a_restart_with_persisted_state_and_a_relist(
        control_plane, kube, namespace, proxy, force_gone, tmp_path):
    for name in ("crashy", "doomed"):  # the baseline every watch starts from
        kube.create("pods", namespace, make_pod(name))
        set_pod(kube, namespace, name, container(RUNNING, ready=True))
    collector, metrics, spool = Collector(), Metrics(), Spool(tmp_path)
    live = integration(control_plane, namespace, "pods", id="live")
    relisted = integration(control_plane, namespace, "pods", id="relisted", server=proxy.url)
    persisted = integration(control_plane, namespace, "pods", id="persisted")

    def persisted_pool():
        pool = WatchPool(make_emit=collector.make_emit, timing=fast_timing(), metrics=Metrics(),
                         connect_timeout=5.0, state_store=spool)
        pool.adjust(wanted_watches([persisted]))
        return pool

    def ids(integration_id):
        return {c.title: c.external_id for route, c in collector.items if route.integration_id == integration_id}

    pool, _ = start_pool([live, relisted], collector=collector, metrics=metrics)
    pools = [pool, persisted_pool()]
    try:
        wait_watching(pools[0])
        wait_watching(pools[1])
        kube.create("pods", namespace, make_pod("early"))
        set_pod(kube, namespace, "early", container(RUNNING))
        wait_for(lambda: len(collector.items) == 3, message=f"every watch to see early; have {collector.items}")
        pools[1].stop_all()  # "persisted" goes down; its state is flushed to the spool
        proxy.refuse()  # "relisted" loses its stream
        proxy.cut_all()
        set_pod(kube, namespace, "crashy", container(waiting("CrashLoopBackOff"), restarts=1, last=terminated(1, "Error")))
        kube.delete("pods", namespace, "doomed")
        kube.create("pods", namespace, make_pod("late"))
        set_pod(kube, namespace, "late", container(RUNNING))
        wait_for(lambda: len(ids("live")) == 4, message=f"the live watch to see every change; have {ids('live')}")
        force_gone("pods", namespace)
        proxy.resume()
        pools.append(persisted_pool())  # the restart: its first list diffs against the spool
        wait_for(lambda: len(ids("relisted")) == len(ids("persisted")) == 4, timeout=60,
                 message=f"the relist and the restart to catch up; have {collector.titles()}")
        wait_watching(pools[2])
        # crashy's crash, restart and back-off came in one status update: one event
        assert sorted(ids("live")) == sorted([
            "Pod Created: early", "Pod CrashLoopBackOff: crashy", "Pod Deleted: doomed", "Pod Created: late"])
        assert ids("persisted") == ids("live")
        assert ids("relisted") == ids("live")
        assert len(set(ids("live").values())) == 4  # one id per change
        assert len(collector.items) == 12  # and no change twice
    finally:
        proxy.resume()
        for p in pools:
            p.stop_all()
        spool.close()
