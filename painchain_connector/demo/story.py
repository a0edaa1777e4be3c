"""The demo's story: a Deployment's life in the `demo` namespace, and the events it must cause.

A story is a list of `Step`s (what a person is told, then a pause of `pace` seconds) made
of `Beat`s: one write to the API (by "the user" through kubectl-like calls, or by the
`StandIn` playing the controllers and the kubelet) and the PainChain titles the connector
must report for it. Each beat's titles come from one watch stream, so their order is
fixed; `play` waits for them (with a deadline) before the next beat, so the whole story's
order is fixed too: `expected_titles()` is exactly what the connector should print.

`Recorder` is the connector's poster during the demo: it keeps what was reported, wakes
the story, and forwards each event to the display. Nothing here starts a greenlet; `play`
runs in the caller's (the entry's `demo:story`) and sleeps through `sleep`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import gevent
from gevent.event import Event

from ..model import Outgoing
from .kube import Kube
from .standin import StandIn, pod_name, template_hash

NAMESPACE = "demo"
APP = "web"
GOOD, BAD = "ghcr.io/example/web:1.4.0", "ghcr.io/example/web:1.5.0"
CRASH = "panic: config: DATABASE_URL is not set"


class StoryStalled(Exception):
    """The connector did not report what a beat expected in time; the message says what."""


@dataclass(frozen=True)
class Beat:
    action: Callable[[], object]
    expect: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    says: str
    beats: tuple[Beat, ...]


@dataclass(frozen=True)
class Record:
    kind: str
    title: str
    body: dict
    at: float  # time.time() when reported


@dataclass
class Recorder:
    """The poster: records every reported event, then hands it to each of `forward`."""

    forward: Sequence[Callable[[Outgoing], object]] = ()
    records: list[Record] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._posted = Event()

    def post(self, item: Outgoing) -> str:
        self.records.append(Record(item.kind, str(item.body.get("title")), dict(item.body), self.clock()))
        for poster in self.forward:
            poster(item)
        self._posted.set()
        return "stored"

    def wait_for(self, titles: Sequence[str], *, since: int, timeout: float) -> None:
        """Returns once every title of `titles` was reported after record `since`."""
        deadline = time.monotonic() + timeout
        while True:
            self._posted.clear()
            seen = [r.title for r in self.records[since:]]
            missing = [t for t in titles if t not in seen]
            if not missing:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoryStalled(f"the connector did not report {missing} within {timeout:.0f}s "
                                   f"(it reported {seen or 'nothing'})")
            self._posted.wait(left)


def deployment(image: str, replicas: int) -> dict:
    labels = {"app": APP}
    container = {"name": "main", "image": image, "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container], "terminationGracePeriodSeconds": 30}}}}


def canary_service(image: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{APP}-canary", "labels": {"app": APP}},
            "spec": {"type": "ClusterIP", "selector": {"app": APP, "pod-template-hash": template_hash(image)},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def image_patch(image: str) -> dict:
    """`kubectl set image`: only the image changes (a merge patch replaces the whole list)."""
    return {"spec": {"template": {"spec": {"containers": deployment(image, 0)["spec"]["template"]["spec"]["containers"]}}}}


def steps(kube: Kube, namespace: str = NAMESPACE) -> list[Step]:
    """The story, as closures over `kube`. Their titles: `expected_titles(steps(...))`."""
    ctl = StandIn(kube, namespace)
    ns = namespace
    good = [pod_name(APP, GOOD, i) for i in range(3)]
    bad = pod_name(APP, BAD, 0)
    dep = {}  # the Deployment as last written (the controllers read it)
    rs = {}

    def create():
        dep.update(kube.create("deployments", ns, deployment(GOOD, 2)))

    def start_pods(image, indexes, replicas):
        rs[image] = ctl.replica_set(dep, image, replicas)
        for i in indexes:
            ctl.pod(rs[image], i, image)
        for i in indexes:
            ctl.running(pod_name(APP, image, i), image)

    def update(patch):
        dep.update(kube.patch("deployments", ns, APP, patch))

    def status(*, replicas, updated, ready, complete):
        ctl.deployment_status(APP, generation=dep["metadata"]["generation"], replicas=replicas, updated=updated,
                              ready=ready, complete=complete)

    crash = {}

    def crashed():
        crash["last"] = ctl.crashed(bad, BAD, exit_code=1, message=CRASH)

    def roll_back_pods():
        ctl.replica_set(dep, BAD, 0)
        ctl.delete_pod(bad)

    return [
        Step(f"Deployment {APP} is created: 2 replicas of {GOOD}; its pods start and the rollout completes.", (
            Beat(create, (f"Deployment Created: {APP}",)),
            Beat(lambda: start_pods(GOOD, (0, 1), 2), tuple(f"Pod Created: {p}" for p in good[:2])),
            Beat(lambda: status(replicas=2, updated=2, ready=2, complete=True),
                 (f"Deployment Rollout Complete: {APP}",)),
        )),
        Step(f"kubectl scale deployment {APP} --replicas=3: one more pod starts.", (
            Beat(lambda: update({"spec": {"replicas": 3}}), (f"Deployment Scaled: {APP} (2 → 3)",)),
            Beat(lambda: (start_pods(GOOD, (2,), 3), status(replicas=3, updated=3, ready=3, complete=True)),
                 (f"Pod Created: {good[2]}",)),
        )),
        Step(f"A new image, {BAD}, rolls out: its first pod starts, with a canary Service in front of it.", (
            Beat(lambda: update(image_patch(BAD)), (f"Deployment Updated: {APP}: containers[main].image {GOOD} → {BAD}",)),
            Beat(lambda: (start_pods(BAD, (0,), 1), status(replicas=4, updated=1, ready=3, complete=False)),
                 (f"Pod Created: {bad}",)),
            Beat(lambda: kube.create("services", ns, canary_service(BAD)), (f"Service Created: {APP}-canary",)),
        )),
        Step("The new version crashes at start-up; the kubelet restarts it, then backs off, and warns.", (
            # A failure this soon after the rollout names it (the stand-in writes no revision).
            Beat(crashed, (f"Pod Container Terminated: {bad} (main: exit 1, Error) after rollout of Deployment {APP}",)),
            # One status update per change: the kubelet's own updates are this fine-grained, and the
            # events stay one per update whether or not detection merges a crash with its back-off.
            Beat(lambda: ctl.restarted(bad, BAD, restarts=1, last=crash["last"]),
                 (f"Pod Restarted: {bad} (restarts 0 → 1)",)),
            Beat(lambda: ctl.back_off(bad, BAD, restarts=1, last=crash["last"], delay="10s"),
                 (f"Pod CrashLoopBackOff: {bad} after rollout of Deployment {APP}",)),
            Beat(lambda: ctl.warning(bad, reason="BackOff", message="Back-off restarting failed container"),
                 (f"K8s Event [Warning]: BackOff - Pod/{bad}",)),
        )),
        Step(f"kubectl rollout undo deployment {APP}: back to {GOOD}; the canary Service is deleted.", (
            Beat(lambda: update(image_patch(GOOD)), (f"Deployment Updated: {APP}: containers[main].image {BAD} → {GOOD}",)),
            Beat(roll_back_pods, (f"Pod Deleted: {bad}",)),
            Beat(lambda: status(replicas=3, updated=3, ready=3, complete=True),
                 (f"Deployment Rollout Complete: {APP}",)),
            Beat(lambda: kube.delete("services", ns, f"{APP}-canary"), (f"Service Deleted: {APP}-canary",)),
        )),
    ]


def expected_titles(story: Sequence[Step]) -> list[str]:
    return [title for step in story for beat in step.beats for title in beat.expect]


def play(story: Sequence[Step], *, recorder: Recorder, pace: float, say: Callable[[str], None],
         timeout: float = 30.0, sleep: Callable[[float], None] = gevent.sleep) -> None:
    """Plays every step, `pace` seconds apart; raises StoryStalled when a beat's events do not come."""
    for number, step in enumerate(story, 1):
        if number > 1:
            sleep(pace)
        say(f"[{number}/{len(story)}] {step.says}")
        for beat in step.beats:
            since = len(recorder.records)
            beat.action()
            recorder.wait_for(beat.expect, since=since, timeout=timeout)
