"""Test session setup: the suite runs the way the connector runs, under gevent.

Patching here (the first conftest pytest imports) mirrors `python -m painchain_connector`:
the connector, the fake backend, the TCP proxy and the admin client all run as greenlets.
"""
from gevent import monkey

monkey.patch_all()

from tests.envtest.fixtures import *  # noqa: E402,F401,F403 - control plane fixtures for e2e tests


import pytest  # noqa: E402

from tests.fakebackend import FakeBackend  # noqa: E402


@pytest.fixture
def logs():
    """The package's log records (DEBUG and up) while the test runs, as loguru records."""
    from loguru import logger

    records = []
    logger.enable("painchain_connector")
    handler = logger.add(lambda message: records.append(message.record), level="DEBUG")
    yield records
    logger.remove(handler)
    logger.disable("painchain_connector")


@pytest.fixture
def backend():
    """A fake PainChain backend on a loopback port (tests/fakebackend.py), stopped afterwards."""
    with FakeBackend() as fake:
        yield fake
