"""The raw-JSON client of the tests, now in the package (painchain_connector/demo/kube.py)
because `--demo` writes its story through it; the names tests import stay here."""
from painchain_connector.demo.kube import (  # noqa: F401 - re-exported
    APPS,
    CORE,
    RBAC,
    RESOURCES,
    Kube,
    KubeError,
    Resource,
    WatchStream,
    path_for,
    resource,
)
