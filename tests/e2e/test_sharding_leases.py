"""Lease membership on the real apiserver, in-process: replicas see each other, a released
Lease leaves at once, an unrenewed one after its duration, a cut-off replica stops."""
import time
import uuid

import pytest

from painchain_connector.metrics import Metrics
from painchain_connector.settings import Settings
from painchain_connector.sharding import build_sharding
from painchain_connector.sharding.leases import GROUP_LABEL
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e


class _Integration:
    def __init__(self, id):
        self.id = id


IDS = [_Integration(f"int-{i}") for i in range(12)]


@pytest.fixture
def replica(kubeconfig, namespace):
    group = f"g-{uuid.uuid4().hex[:6]}"
    made = []

    def make(identity, *, server=None, lease=3, handover=1.0):
        settings = Settings(backend_url="http://127.0.0.1:9/api", shard_lease_namespace=namespace, shard_group=group,
                            shard_identity=identity, shard_kubeconfig=kubeconfig(server=server),
                            shard_lease_seconds=lease, shard_handover_seconds=handover, connect_timeout=1.0)
        sharding = build_sharding(settings, metrics=Metrics())
        made.append(sharding)
        return sharding

    yield make
    for sharding in made:
        if sharding._loop is not None:
            sharding._loop.kill()


def test_replicas_see_each_other_and_split_the_integrations(replica, kube, namespace):
    a, b = replica("a"), replica("b")
    for sharding in (a, b, a):
        sharding.tick()
    assert a.share.members == b.share.members == ("a", "b")
    mine_a, mine_b = {i.id for i in a.select(IDS)}, {i.id for i in b.select(IDS)}
    assert mine_a and mine_b and mine_a.isdisjoint(mine_b) and mine_a | mine_b == {i.id for i in IDS}
    lease = kube._json("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/a")
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 3
    assert lease["metadata"]["labels"][GROUP_LABEL] == a.leases.group


def test_a_released_lease_leaves_at_once_and_an_unrenewed_one_after_its_duration(replica):
    a, b, c = replica("a", handover=0), replica("b"), replica("c")
    for sharding in (a, b, c, b):
        sharding.tick()
    assert b.share.members == ("a", "b", "c")
    a.stop(hand_over=True)  # deletes its Lease
    b.tick()
    assert b.share.members == ("b", "c")
    last_renewal = time.monotonic()
    c.tick()  # c then dies without a word
    wait_for(lambda: b.tick() or b.share.members == ("b",), timeout=10, interval=0.2,
             message="c's Lease to expire in b's eyes")
    assert time.monotonic() - last_renewal >= 3  # never before its duration, on b's own clock


def test_a_replica_restarted_under_the_same_identity_takes_its_lease_back(replica):
    first = replica("same")
    first.tick()
    again = replica("same")  # a new process: knows nothing of the existing Lease
    again.tick()
    assert again.first_view.is_set() and again.share.members == ("same",) and again._renew_error is None


def test_a_replica_cut_off_from_the_leases_keeps_its_share_for_the_grace_then_stops_and_comes_back(
        replica, proxy):
    cut, other = replica("cut", server=proxy.url, lease=2, handover=1.0), replica("other", lease=2)
    cut.start()
    other.start()
    wait_for(lambda: cut.share.members == ("cut", "other"), timeout=10, message="both members seen")
    share = {i.id for i in cut.select(IDS)}
    proxy.refuse()
    proxy.cut_all()
    started = time.monotonic()
    wait_for(lambda: other.share.members == ("other",), timeout=10, message="the other to drop the cut-off replica")
    assert {i.id for i in cut.select(IDS)} == share  # overlap, not a gap, while within the grace
    wait_for(lambda: cut.is_cut_off(), timeout=10, interval=0.1, message="the partition grace to run out")
    assert time.monotonic() - started >= cut.timing.partition_grace - cut.timing.renew_interval - 0.5
    assert cut.select(IDS) == []
    proxy.resume()
    wait_for(lambda: not cut.is_cut_off() and cut.share.members == ("cut", "other"), timeout=15,
             message="the replica to renew and see the members again")
    assert {i.id for i in cut.select(IDS)} == share
