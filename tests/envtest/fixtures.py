"""pytest fixtures over a real control plane: `from tests.envtest.fixtures import *` in conftest.

Fixtures (see each docstring):
    control_plane     session   ControlPlane (etcd + kube-apiserver), started once
    controllers_plane session   a second one that also runs the real controllers and scheduler
    controllers_kube  session   Kube admin client of controllers_plane
    kube              session   Kube admin client on raw dicts
    namespace         function  a fresh namespace name (never waited on when deleted)
    restricted_token  function  factory: a pool user's token bound to a Role you describe
    kubeconfig        function  factory: a kubeconfig file with named contexts
    proxy             function  FaultyProxy in front of the apiserver
    force_gone        function  makes a watch from an old resourceVersion answer 410

How it fails: if the control plane cannot start, every test using it ERRORs with the
reason (pytest caches the session fixture's error); nothing is skipped.
Greenlets: only the proxy's (closed at teardown) and those of the `refuse` timer.
"""
from __future__ import annotations

import base64
import collections
import functools
import re
import time
import uuid

import pytest
import requests

from tests.envtest.builders import make_configmap
from tests.envtest.controlplane import ControlPlane
from tests.envtest.kube import Kube, KubeError, resource
from tests.envtest.proxy import FaultyProxy

__all__ = ["control_plane", "controllers_plane", "controllers_kube", "kube", "namespace", "restricted_token", "kubeconfig", "proxy",
           "force_gone", "envtest_user_pool"]

SCRATCH_NAMESPACE = "envtest-scratch"


def wait_for(condition, *, timeout: float = 10.0, interval: float = 0.05, message: str = ""):
    """Polls `condition()` until it returns something truthy, and returns that; fails the
    test after `timeout` seconds. The way to wait in these tests (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)


# -- the control plane ---------------------------------------------------------------

@pytest.fixture(scope="session")
def control_plane(request):
    """etcd + kube-apiserver for the whole session (builds the apiserver on first use).
    Attributes: server, ca_file, ca_b64, admin_token, etcd_url, write_kubeconfig()."""
    cp = ControlPlane()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # Uncaptured: a first-time build streams ~7 minutes of progress, and the start time
    # is worth seeing on every run.
    with capture.global_and_fixture_disabled():
        cp.start()
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def controllers_plane(request):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + 2 fake Nodes:
    a separate plane, because the tests on `control_plane` write statuses by hand and a
    real controller would overwrite them. The tests play the kubelet (pods' /status)."""
    cp = ControlPlane(controllers=True, etcd_proxy=None, label="envtest+controllers")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        cp.start()
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def controllers_kube(controllers_plane):
    client = Kube(server=controllers_plane.server, ca_file=controllers_plane.ca_file,
                  token=controllers_plane.admin_token)
    yield client
    client.close()


@pytest.fixture(scope="session")
def kube(control_plane):
    """Admin client on raw dicts: create/get/list/patch/patch_status/replace/delete/watch,
    with_token(token, server=...) for another user or the proxy."""
    client = Kube(server=control_plane.server, ca_file=control_plane.ca_file,
                  token=control_plane.admin_token)
    yield client
    client.close()


@pytest.fixture
def namespace(kube, request):
    """A fresh namespace per test. Deleted afterwards without waiting: with no
    namespace controller it stays Terminating forever, so names are never reused."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:5]}"
    kube.create("namespaces", None, {"metadata": {"name": name}})
    yield name
    kube.delete("namespaces", None, name, missing_ok=True)


# -- users and credentials -----------------------------------------------------------

class UserPool:
    """The control plane's role-less users. A returned user goes to the back of the
    queue, so a user is reused only after every other one was handed out."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens
        self._free = collections.deque(tokens)

    def take(self) -> str:
        if not self._free:
            raise RuntimeError(f"all {len(self.tokens)} envtest users are in use; "
                               "raise ControlPlane(user_pool_size=...)")
        return self._free.popleft()

    def give_back(self, user: str) -> None:
        self._free.append(user)


@pytest.fixture(scope="session")
def envtest_user_pool(control_plane):
    return UserPool(control_plane.user_tokens)


def _allowed(kube: Kube, user: str, namespace: str | None, plural: str, verb: str) -> bool:
    attrs = {"verb": verb, "group": resource(plural).group, "resource": plural}
    if namespace:
        attrs["namespace"] = namespace
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "resourceAttributes": attrs}}
    answer = kube._json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    return bool(answer.get("status", {}).get("allowed"))


@pytest.fixture
def restricted_token(kube, envtest_user_pool):
    """Factory: restricted_token(namespaces=["ns"] | None, resources=["pods", ...],
    verbs=("get", "list", "watch")) -> bearer token of a pool user that may do exactly
    that: a Role + RoleBinding per namespace, or, with namespaces=None, a ClusterRole +
    ClusterRoleBinding. Returns only once RBAC enforces it (checked by
    SubjectAccessReview); removed again at teardown."""
    handed_out = []   # (user, [(plural, namespace, name)], probe)

    def make(namespaces=None, resources=("pods",), verbs=("get", "list", "watch")) -> str:
        if isinstance(namespaces, str) or isinstance(resources, str):
            raise TypeError("namespaces and resources are lists of names")
        user = envtest_user_pool.take()
        by_group = collections.defaultdict(list)
        for plural in resources:
            by_group[resource(plural).group].append(plural)
        rules = [{"apiGroups": [group], "resources": plurals, "verbs": list(verbs)}
                 for group, plurals in by_group.items()]
        name = f"envtest-{user}-{uuid.uuid4().hex[:6]}"
        subject = [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]
        created = []
        if namespaces is None:
            kube.create("clusterroles", None, {"metadata": {"name": name}, "rules": rules})
            kube.create("clusterrolebindings", None, {
                "metadata": {"name": name}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}})
            created += [("clusterrolebindings", None, name), ("clusterroles", None, name)]
        else:
            for ns in namespaces:
                kube.create("roles", ns, {"metadata": {"name": name}, "rules": rules})
                kube.create("rolebindings", ns, {
                    "metadata": {"name": name}, "subjects": subject,
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}})
                created += [("rolebindings", ns, name), ("roles", ns, name)]
        checks = [(ns, plural, verb) for ns in (namespaces or [None]) for plural in resources for verb in verbs]
        for ns, plural, verb in checks:
            wait_for(functools.partial(_allowed, kube, user, ns, plural, verb), timeout=30,
                     message=f"RBAC to allow {user} to {verb} {plural} in {ns or 'all namespaces'}")
        handed_out.append((user, created, checks[0]))
        return envtest_user_pool.tokens[user]

    yield make
    for user, created, (ns, plural, verb) in handed_out:
        for plural_, ns_, name in created:
            kube.delete(plural_, ns_, name, missing_ok=True)
        wait_for(lambda: not _allowed(kube, user, ns, plural, verb), timeout=30,  # noqa: B023 - called at once
                 message=f"RBAC to forget {user}'s role")
        envtest_user_pool.give_back(user)


@pytest.fixture
def kubeconfig(control_plane, tmp_path):
    """Factory: kubeconfig(contexts={"admin": token, "reader": token2} | None,
    current=None, server=None, embed_ca=False) -> path of a new kubeconfig file.
    Default: one context "admin" with the admin token. server= points it elsewhere
    (e.g. proxy.url); the CA is referenced by file path unless embed_ca."""
    count = iter(range(1_000_000))

    def make(contexts: dict[str, str] | None = None, *, current: str | None = None,
             server: str | None = None, embed_ca: bool = False) -> str:
        path = tmp_path / f"kubeconfig-{next(count)}"
        return control_plane.write_kubeconfig(
            path, contexts or {"admin": control_plane.admin_token}, current=current,
            server=server, embed_ca=embed_ca)

    return make


# -- faults --------------------------------------------------------------------------

@pytest.fixture
def proxy(control_plane):
    """A FaultyProxy in front of the apiserver: connect to proxy.url (TLS passes through
    and verifies with control_plane.ca_file). cut_all(), cut_one(), stall()/unstall(), hold_open()/release(),
    refuse(seconds)/resume(), latency(seconds); counters accepted, open_connections."""
    p = FaultyProxy(("127.0.0.1", control_plane.api_port)).start()
    yield p
    p.close()


def _etcd_revision(session: requests.Session, etcd_url: str) -> int:
    answer = session.post(f"{etcd_url}/v3/kv/range", json={"key": base64.b64encode(b"/").decode()}, timeout=10)
    answer.raise_for_status()
    return int(answer.json()["header"]["revision"])


def gone_event(kube: Kube, plural: str, namespace: str | None, resource_version: str) -> dict | None:
    """The ERROR event's Status if a watch from `resource_version` is refused with 410,
    else None. (1.20 answers HTTP 200 and then one ERROR event, for cached and uncached
    resources alike; an HTTP 410 is accepted too.)"""
    try:
        stream = kube.watch(plural, namespace, resource_version=resource_version, timeout_seconds=1,
                            bookmarks=False, read_timeout=10)
    except requests.RequestException:
        return None   # the apiserver is still reconnecting to etcd: ask again
    with stream:
        if stream.status_code == 410:
            return stream.error
        if stream.status_code != 200:
            return None
        try:
            for event in stream:
                if event["type"] == "ERROR":
                    return event["object"] if event["object"].get("code") == 410 else None
        except requests.RequestException:
            return None   # the apiserver lost etcd meanwhile: ask again
    return None


@pytest.fixture
def force_gone(control_plane, kube):
    """force_gone(resource, namespace=None, *, resource_version=None, timeout=60) -> the
    410 Status object. Afterwards a watch of `resource` from `resource_version` (default:
    the list RV read at the call) is answered "410 Expired".

    How: write a scratch object twice (so every watch cache's newest event is at least two
    revisions behind etcd's current one), compact etcd to that revision (v3 JSON gateway), then cut the
    apiserver's etcd connections: its etcd watches reconnect from their old revision, get
    "compacted", and every watch cache relists; its window then starts after the old RV. Open cached
    watches end (cleanly); open uncached ones (core/v1 events) get the ERROR 410 in-stream.
    Overflowing the watch cache is no option in 1.20: --default-watch-cache-size only
    switches caches on or off; capacity starts at 100 and doubles while the oldest
    event is under 75 s old (up to 102400). Takes about 1-2 s."""
    session = requests.Session()
    session.trust_env = False

    def force(plural: str, namespace: str | None = None, *, resource_version: str | None = None,
              timeout: float = 60.0) -> dict:
        old = resource_version or kube.list(plural, namespace)["metadata"]["resourceVersion"]
        try:
            kube.create("namespaces", None, {"metadata": {"name": SCRATCH_NAMESPACE}})
        except KubeError as e:
            if e.status != 409:
                raise
        # Two writes: etcd keeps the compaction revision itself readable, and a watch
        # resumes from (last revision it saw + 1); that must be BELOW the compaction
        # revision for etcd to answer "compacted".
        bump = kube.create("configmaps", SCRATCH_NAMESPACE, make_configmap(f"bump-{uuid.uuid4().hex[:8]}"))
        kube.patch("configmaps", SCRATCH_NAMESPACE, bump["metadata"]["name"], {"data": {"bumped": "twice"}})
        revision = _etcd_revision(session, control_plane.etcd_url)
        answer = session.post(f"{control_plane.etcd_url}/v3/kv/compaction",
                              json={"revision": revision, "physical": True}, timeout=30)
        answer.raise_for_status()
        control_plane.cut_etcd_connections()
        return wait_for(lambda: gone_event(kube, plural, namespace, old), timeout=timeout, interval=0.2,
                        message=f"a watch of {plural} from resourceVersion {old} to get 410")

    yield force
    session.close()
