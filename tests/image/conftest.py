"""Fixtures of the image tests (`tox -e image`; the image comes from tests/image/build.sh).

    image          session   the image's name; fails every test if it was not built
    image_root     session   the image's filesystem, mounted read-only (podman image mount)
    containers     function  factory: containers.run(...) with teardown (podman rm -f)
    state_volume   function  a fresh named podman volume for STATE_DIR, removed afterwards

The control plane, `kube`, `namespace` and the fake `backend` come from tests/conftest.py.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.image import containers as podman_containers
from tests.image.containers import IMAGE, podman


@pytest.fixture(scope="session")
def image() -> str:
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} not found: build it with `bash tests/image/build.sh` (tox -e image does)")
    return IMAGE


@pytest.fixture(scope="session")
def image_root(image):
    root = Path(podman("image", "mount", image).stdout.strip())
    yield root
    podman("image", "unmount", image, check=False)


@pytest.fixture
def containers(image):
    started = []

    def run(*args, **kwargs):
        container = podman_containers.run(args, image=image, **kwargs)
        started.append(container)
        return container

    yield run
    for container in started:
        container.remove()


@pytest.fixture
def state_volume():
    name = f"painchain-state-{uuid.uuid4().hex[:10]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "--force", name, check=False)
