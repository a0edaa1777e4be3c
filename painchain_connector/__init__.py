"""PainChain Kubernetes connector.

Importing this package has no side effects: it does not monkey-patch, install signal
handlers or add log sinks, and it imports neither loguru, ssl, urllib3, requests nor
kubernetes (so that `python -m painchain_connector` can patch first). The package's
loguru logger is disabled (painchain_connector._log) until the host calls
`logger.enable("painchain_connector")`.

Embedding:  from painchain_connector import Connector, load_settings
"""
__all__ = ["Connector", "Settings", "load_settings"]


def __getattr__(name: str):
    # Lazy: keeps `import painchain_connector` free of ssl/urllib3/kubernetes imports.
    if name == "Connector":
        from .running import Connector

        return Connector
    if name in ("Settings", "load_settings"):
        from . import settings

        return getattr(settings, name)
    raise AttributeError(name)
