"""Scale-out when the host cluster (the Leases) cannot be reached: a replica cut off alone
keeps its share through the partition grace, then stops instead of watching alongside the
new owners forever; an apiserver down for ~10 s for everyone loses no change."""
import time

import pytest

from tests.e2e.replicas import Changes, add_integrations, wait_delivered, wait_steady
from tests.envtest.fixtures import wait_for

pytestmark = pytest.mark.e2e


def test_a_replica_cut_off_from_the_leases_stops_after_the_grace_and_takes_its_share_back_later(
        replicas, backend, control_plane, kube, namespace, proxy, kubeconfig):
    ids = add_integrations(backend, control_plane, namespace, count=30, tenants=3)
    replicas.start("replica-0")
    replicas.start("replica-1")
    cut = replicas.start("replica-2", SHARD_KUBECONFIG=kubeconfig(server=proxy.url))
    owners = wait_steady(replicas, ids, 3)
    its = {i for i, o in owners.items() if o == "replica-2"}
    changes = Changes(kube, namespace).start()
    try:
        proxy.refuse()
        proxy.cut_all()
        cut_at = time.monotonic()
        # The others take its share once its Lease expires; meanwhile it keeps watching (overlap).
        wait_for(lambda: (c := replicas.coverage()) is not None and all(c.get(i, set()) - {"replica-2"} for i in its),
                 timeout=20, interval=0.1, message="the others to take the cut-off replica's share")
        assert cut.watched() == its  # still watching its last known share: overlap, not a gap
        wait_for(lambda: cut.watched() == set(), timeout=20, interval=0.1, message="the cut-off replica to stop")
        grace = replicas.lease + replicas.handover
        assert time.monotonic() - cut_at >= grace - 1
        assert cut.sample("painchain_shard_cut_off") == 1 and cut.alive
        proxy.resume()
        back = wait_steady(replicas, ids, 3)
        assert {i for i, o in back.items() if o == "replica-2"} == its  # consistent hashing: the same share
        changes.make("after")
    finally:
        proxy.resume()
        names = changes.stop()
    wait_delivered(backend, ids, names)
    assert "cut off from the Leases" in cut.log_text()


def test_the_host_apiserver_down_for_ten_seconds_loses_no_change(
        replicas, backend, control_plane, kube, namespace, proxy, kubeconfig):
    # The proxy plays the host cluster's apiserver: it hosts the Leases AND the watched objects.
    ids = add_integrations(backend, control_plane, namespace, count=30, tenants=3, server=proxy.url)
    behind_proxy = kubeconfig(server=proxy.url)
    for n in range(3):
        replicas.start(f"replica-{n}", SHARD_KUBECONFIG=behind_proxy)
    wait_steady(replicas, ids, 3)
    changes = Changes(kube, namespace).start()  # written directly: the changes go on meanwhile
    try:
        proxy.refuse(10)
        proxy.cut_all()
        # Down longer than the partition grace (3 + 3 s): every replica stops, keeping its state.
        wait_for(lambda: all(r.sample("painchain_shard_cut_off") == 1 for r in replicas.running()), timeout=12,
                 interval=0.1, message="every replica to stop for lack of Leases")
        wait_steady(replicas, ids, 3, timeout=40)  # back: shares recomputed, relists diff against the saved state
        changes.make("after")
    finally:
        proxy.resume()
        names = changes.stop()
    wait_delivered(backend, ids, names)
