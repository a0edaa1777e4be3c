"""Fixtures of the scale-out tests (connector replicas as processes)."""
import pytest

from tests.e2e.replicas import ReplicaSet


@pytest.fixture
def replicas(backend, kubeconfig, namespace, tmp_path):
    """Connector processes sharing one Lease group in `namespace` (3 s lease, 3 s hand-over);
    killed at teardown."""
    replica_set = ReplicaSet(backend=backend, kubeconfig=kubeconfig(), namespace=namespace, workdir=tmp_path)
    yield replica_set
    replica_set.close()
