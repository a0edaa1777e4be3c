"""Run the connector's image with rootful podman, the way these machines allow.

The image is built by tests/image/build.sh (`tox -e image` runs it first); PAINCHAIN_IMAGE
names another one. Every container runs on the host network, so it reaches the test
apiserver and the fake backend on 127.0.0.1, and tests reach its health port there.

`Container` is one attached `podman run` child process: its stdout and stderr are read
line by line by two greenlets, its exit code is the container's. How it fails: `start`
raises `AssertionError` with podman's own message when the container cannot be created;
waits raise `AssertionError` with the tail of the container's stderr (the connector's
log, which redacts tokens and CA bundles) so a failing test says why.
Greenlets: the two readers of each container, ended with it.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import gevent
import requests

IMAGE = os.environ.get("PAINCHAIN_IMAGE", "painchain/kubernetes-connector:ci")
BASE = "docker.io/library/python:3.11-slim"  # the Dockerfile's FROM (or build.sh's stand-in for it)
PODMAN = ["podman", "--runtime", "runc"]  # crun refuses the machine's hybrid cgroup layout
# The machine cannot raise limits past its own, and podman's defaults ask it to; the
# healthcheck timers need systemd, which these machines do not run.
RUN_FLAGS = ["--no-healthcheck", "--ulimit", "nofile=16384:16384", "--ulimit", "nproc=16384:16384"]
# How the compose snippet (deploy/docker-compose.snippet.yml) runs it.
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
STATE_DIR = "/var/lib/painchain"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {args[0]} failed (rc={done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_config(image: str = IMAGE) -> dict:
    """The image's config (Env, User, Healthcheck, Labels, ...) as podman reports it."""
    return json.loads(podman("image", "inspect", image, "--format", "{{json .Config}}").stdout)


def healthcheck(image: str = IMAGE) -> dict:
    """The image's HEALTHCHECK (Test, Interval, ...); {} when it has none (an OCI-format build)."""
    return json.loads(podman("image", "inspect", image, "--format", "{{json .HealthCheck}}").stdout) or {}


def healthcheck_command(image: str = IMAGE) -> list[str]:
    """The HEALTHCHECK's command as an argv, from the image itself."""
    test = healthcheck(image).get("Test") or []
    if test[:1] == ["CMD"]:
        return test[1:]
    if test[:1] == ["CMD-SHELL"]:
        return ["/bin/sh", "-c", test[1]]
    raise AssertionError(f"the image has no HEALTHCHECK command: {test!r}")


@dataclass
class Container:
    """One `podman run` (attached). Use `run()` to make one."""

    name: str
    argv: list[str]
    health_port: int | None = None
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def start(self) -> Container:
        self.started = time.monotonic()
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, bufsize=1)
        self._readers = [gevent.spawn(self._read, self._proc.stdout, self.stdout),
                         gevent.spawn(self._read, self._proc.stderr, self.stderr)]
        return self

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    # -- observing -----------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.stderr[-lines:])

    def wait_until(self, condition, *, timeout: float, what: str):
        """Polls `condition()` until truthy (returned); fails early if the container exits."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.returncode is not None:
                raise AssertionError(f"container {self.name} exited (rc={self.returncode}) before {what}; "
                                     f"its log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; container log:\n"
                                     f"{self.log_tail()}")
            gevent.sleep(0.05)

    def health(self, path: str) -> int | None:
        """HTTP status of the container's health endpoint, None while it does not answer."""
        try:
            return requests.get(f"http://127.0.0.1:{self.health_port}{path}", timeout=2).status_code
        except requests.RequestException:
            return None

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric on /metrics (0 while it does not answer)."""
        try:
            text = requests.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=2).text
        except requests.RequestException:
            return 0.0
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def wait_ready(self, timeout: float = 60) -> float:
        """Waits for /readyz 200; returns the seconds since `podman run` started."""
        self.wait_until(lambda: self.health("/readyz") == 200, timeout=timeout, what="/readyz 200")
        return time.monotonic() - self.started

    def json_lines(self) -> list[dict]:
        """Every stdout line that is a JSON object (local mode writes events there)."""
        found = []
        for line in list(self.stdout):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                found.append(doc)
        return found

    # -- acting --------------------------------------------------------------------------

    def exec(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *argv, timeout=timeout, check=False)

    def signal(self, name: str) -> None:
        podman("kill", "--signal", name, self.name)

    def wait(self, timeout: float) -> int:
        """The container's exit code, once it exited (fails after `timeout` seconds)."""
        try:
            rc = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"container {self.name} still running after {timeout}s; its log:\n"
                                 f"{self.log_tail()}") from None
        gevent.joinall(self._readers, timeout=10)
        return rc

    def finished_at(self) -> float:
        """When the container's process exited (epoch seconds, as conmon saw it): free of
        the time the `podman run` client takes to tear down afterwards."""
        nanos = podman("inspect", self.name, "--format", "{{.State.FinishedAt.UnixNano}}").stdout
        return int(nanos) / 1e9

    def remove(self) -> None:
        podman("rm", "--force", "--volumes", "--time", "0", self.name, check=False)  # and its anonymous volumes
        if self._proc.poll() is None:
            self._proc.wait(timeout=30)
        gevent.killall(self._readers, timeout=5)


def run(args: tuple[str, ...] = (), *, env: dict[str, str] | None = None, volumes: tuple[str, ...] = (),
        hardened: bool = True, health_port: int | None = None, image: str = IMAGE) -> Container:
    """Starts the image on the host network with `args` after the entrypoint. With
    `health_port`, HEALTH_PORT is that port on 127.0.0.1 only (never the image's 8080,
    which a parallel run or another service on the machine may hold)."""
    name = f"painchain-test-{uuid.uuid4().hex[:10]}"
    env = dict(env or {})
    if health_port is not None:
        env.update(HEALTH_PORT=str(health_port), HEALTH_HOST="127.0.0.1")
    argv = [*PODMAN, "run", "--name", name, "--network", "host", *RUN_FLAGS, *(HARDENED if hardened else ())]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    for volume in volumes:
        argv += ["--volume", volume]
    argv += [image, *args]
    return Container(name=name, argv=argv, health_port=health_port).start()
