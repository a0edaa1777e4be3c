"""Fixtures of the e2e tests: in-process connectors, and connector replicas as processes."""
import pytest

from painchain_connector.running import Connector
from painchain_connector.settings import Settings
from tests.e2e.replicas import ReplicaSet


@pytest.fixture
def connector_factory():
    """Start Connectors in this process; each is stopped at teardown."""
    started = []

    def make(settings: Settings) -> Connector:
        connector = Connector(settings).start()
        started.append(connector)
        return connector

    yield make
    for connector in started:
        connector.stop(timeout=1)


@pytest.fixture
def replicas(backend, kubeconfig, namespace, tmp_path):
    """Connector processes sharing one Lease group in `namespace` (3 s lease, 3 s hand-over);
    killed at teardown."""
    replica_set = ReplicaSet(backend=backend, kubeconfig=kubeconfig(), namespace=namespace, workdir=tmp_path)
    yield replica_set
    replica_set.close()
