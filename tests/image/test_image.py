"""The image as built: what is in it, who runs it, and how it starts on a read-only root.

Real containers (rootful podman), no mocks; `tox -e image` builds the image first.
"""
from __future__ import annotations

import glob
import json
import os
import re

import pytest

from tests.image.containers import BASE, RUN_FLAGS, STATE_DIR, free_port, healthcheck, image_config, podman

pytestmark = pytest.mark.image

PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def _certificates(text: str) -> set[str]:
    return {re.sub(r"\s", "", body) for body in PEM.findall(text)}


def _run_once(image: str, *args: str, entrypoint: str | None = None, env: dict | None = None):
    argv = ["run", "--rm", "--network", "none", *RUN_FLAGS]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    for key, value in (env or {}).items():
        argv += ["--env", f"{key}={value}"]
    return podman(*argv, image, *args, check=False)


def test_help_exits_zero_and_names_the_settings(image):
    done = _run_once(image, "--help")
    assert done.returncode == 0, done.stderr
    assert "painchain-connector" in done.stdout and "BACKEND_API_URL" in done.stdout


def test_without_backend_or_config_it_exits_non_zero_with_guidance(image):
    done = _run_once(image, env={"BACKEND_API_URL": ""})
    assert done.returncode != 0
    guidance = done.stderr + done.stdout
    for hint in ("KUBECONFIG", "--config", "--backend"):
        assert hint in guidance, guidance[-2000:]


def test_image_config_runs_uid_10001_with_state_volume_and_healthcheck(image):
    config = image_config(image)
    assert config["User"] == "10001"
    assert STATE_DIR in config.get("Volumes", {})
    assert f"STATE_DIR={STATE_DIR}" in config["Env"]
    assert config["Entrypoint"] == ["painchain-connector"]
    assert healthcheck(image).get("Test"), "HEALTHCHECK lost (built without --format docker?)"


def test_labels_name_the_source_the_installed_version_and_the_licence(image):
    labels = image_config(image)["Labels"]
    installed = _run_once(image, "-c", "import importlib.metadata as m; "
                          "print(m.version('painchain-kubernetes-connector'))", entrypoint="python")
    assert installed.returncode == 0, installed.stderr
    assert labels["org.opencontainers.image.version"] == installed.stdout.strip()
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.licenses"]


def _build_leftovers(image: str) -> list[str]:
    """Paths the runtime stage added on top of the base image that only a build leaves:
    a source tree, build/, egg-info, wheel files, anything left in /tmp."""
    added = json.loads(podman("image", "diff", "--format", "json", image, BASE).stdout).get("added", [])
    found = []
    for path in added:
        parts = path.strip("/").split("/")
        if (parts[0] in ("src", "wheels", "app", "tmp") or parts[-1].endswith((".whl", ".tar.gz"))
                or any(p == "build" or p.endswith(".egg-info") for p in parts)
                or (parts[-1] in ("setup.py", "pyproject.toml") and "site-packages" not in parts)):
            found.append(path)
    return found


def test_runtime_stage_holds_the_installed_wheel_and_no_source_tree(image, image_root):
    assert _build_leftovers(image) == []
    where = _run_once(image, "-c", "import painchain_connector; print(painchain_connector.__file__)",
                      entrypoint="python")
    assert where.returncode == 0, where.stderr
    package = os.path.dirname(where.stdout.strip())
    assert os.path.basename(os.path.dirname(package)) == "site-packages", package
    site = image_root / os.path.dirname(package).lstrip("/")
    assert glob.glob(str(site / "painchain_kubernetes_connector-*.dist-info"))


def test_the_build_time_ca_bundle_did_not_end_up_in_the_image(image_root):
    """The build mounts the host's CA bundle for pip; only Debian's own may remain."""
    host = _certificates(open("/etc/ssl/certs/ca-certificates.crt", encoding="utf-8").read())
    packaged = set()
    for path in glob.glob("/usr/share/ca-certificates/**/*.crt", recursive=True):
        packaged |= _certificates(open(path, encoding="utf-8", errors="replace").read())
    host_only = host - packaged  # authorities this machine adds (none on a plain machine)
    image_bundle = (image_root / "etc/ssl/certs/ca-certificates.crt").read_text(encoding="utf-8")
    leaked = host_only & _certificates(image_bundle)
    # Only a count: a certificate is never printed in a test log.
    assert not leaked, f"{len(leaked)} of the host's own authorities are in the image's CA bundle"


def test_connector_process_runs_as_uid_10001(containers, backend):
    container = containers(env={"BACKEND_API_URL": backend.url}, health_port=free_port())
    container.wait_ready()
    status = container.exec("cat", "/proc/1/status")
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status.stdout, re.M)
    assert uids and uids.groups() == ("10001", "10001"), status.stdout + status.stderr


def test_read_only_root_works_with_state_dir_on_a_volume_and_tmpfs_tmp(containers, backend, state_volume):
    container = containers(env={"BACKEND_API_URL": backend.url}, health_port=free_port(),
                           volumes=(f"{state_volume}:{STATE_DIR}",))
    container.wait_ready()
    assert backend.received_at("/integrations/types/register")
    root_write = container.exec("touch", "/opt/written")
    assert root_write.returncode != 0 and "Read-only file system" in root_write.stderr
    assert container.exec("touch", "/tmp/written").returncode == 0
    state = container.exec("ls", STATE_DIR)
    assert state.returncode == 0 and state.stdout.split(), "nothing written under STATE_DIR"
    mounts = container.exec("cat", "/proc/mounts").stdout
    assert any(line.split()[1] == STATE_DIR and "rw" in line.split()[3].split(",") for line in mounts.splitlines())
