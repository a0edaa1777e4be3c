"""A real Kubernetes control plane on loopback: etcd + kube-apiserver, for the demo and the tests.

Owns two or three child processes (etcd, optionally an etcd proxy, kube-apiserver) and a
private run directory (certs, token file, logs, etcd data). No kubelet, scheduler or
controller-manager runs, like controller-runtime's envtest: whoever uses it creates,
updates, deletes and watches objects for real and plays the controllers (writes
`/status`, creates Events). `--demo` runs it; so does the test suite (tests/envtest,
which adds the etcd proxy its fault-injection tests need).

Binaries: `KUBE_APISERVER_BIN` / `ETCD_BIN` override; otherwise
`${XDG_CACHE_HOME:-~/.cache}/painchain-envtest/bin/kube-apiserver` (built once by
`build.sh` next to this module, which `find_apiserver()` runs, streaming its output,
when the binary is missing) and `etcd` from PATH or `/usr/bin/etcd` (Debian's etcd-server).

With `etcd_proxy` (a script path, see tests/envtest/proxy.py) the apiserver reaches etcd
through that TCP proxy child process: `cut_etcd_connections()` makes every etcd watch of
the apiserver reconnect at once, which is how tests force a watch cache to relist.
Restarting etcd instead is unreliable: the apiserver's gRPC clients back off (1 s, 1.6 s,
... up to 2 min) while etcd is down, and some caches reconnect only minutes later.

Ports are picked by binding port 0 on 127.0.0.1, so parallel runs do not collide; the
tiny window between picking and binding is covered by retrying the start with fresh
ports when a process reports "address already in use".

How it fails: `start()` raises `ControlPlaneError` with the tail of the failing log when
a process exits early or `/readyz` is not 200 before the deadline; it stops whatever it
started first. Children get SIGTERM if this process dies (PR_SET_PDEATHSIG), so a killed
run leaves no apiserver behind; with `own_session` they also leave the terminal's process
group, so a Ctrl-C reaches only the parent, which stops them in order. `stop()` removes
the run directory it created. Starts no greenlets and installs no signal handlers.
"""
from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"  # package data (setup.py)
USER_POOL_SIZE = 32
LOOPBACK = "127.0.0.1"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "painchain-envtest"


def find_etcd() -> Path:
    override = os.environ.get("ETCD_BIN")
    if override:
        return _executable(Path(override), "ETCD_BIN")
    found = shutil.which("etcd") or ("/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None)
    if not found:
        raise ControlPlaneError(
            "etcd not found: install Debian's etcd-server (tests/envtest/build.sh does) or set ETCD_BIN")
    return Path(found)


def find_apiserver(*, build: bool = True, out=None) -> Path:
    """The kube-apiserver binary; builds it once (≈7-9 min) when it is missing."""
    override = os.environ.get("KUBE_APISERVER_BIN")
    if override:
        return _executable(Path(override), "KUBE_APISERVER_BIN")
    binary = cache_dir() / "bin" / "kube-apiserver"
    if os.access(binary, os.X_OK):
        return binary
    if not build:
        raise ControlPlaneError(f"{binary} missing; run bash {BUILD_SCRIPT}")
    run_build(out=out)
    return _executable(binary, "the build result")


def run_build(*, out=None) -> None:
    """Runs build.sh, copying its output line by line to `out` so progress is visible.
    Interrupted (Ctrl-C, a killed greenlet), it terminates the build's whole process group."""
    out = out or sys.stderr
    print(f"[envtest] kube-apiserver missing: running {BUILD_SCRIPT} (one time only, about 9 min on 2 cores; "
          f"needs root for apt)", file=out, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(["bash", str(BUILD_SCRIPT), str(cache_dir())], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail = []
    try:
        for line in proc.stdout:
            print(line, end="", file=out, flush=True)
            tail = (tail + [line])[-30:]
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    if rc != 0:
        raise ControlPlaneError(f"{BUILD_SCRIPT} failed (rc={rc}); last lines:\n{''.join(tail)}")
    print(f"[envtest] build finished in {time.monotonic() - started:.0f}s", file=out, flush=True)


def _executable(path: Path, what: str) -> Path:
    if not os.access(path, os.X_OK):
        raise ControlPlaneError(f"{what}: {path} is not an executable file")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM it when its parent dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError as e:
        return f"(no log: {e})"


class ControlPlane:
    """etcd + kube-apiserver. `start()`, then use `server`, `ca_file`, `admin_token`..."""

    def __init__(self, *, run_dir: str | os.PathLike | None = None, ready_timeout: float = 90.0,
                 user_pool_size: int = USER_POOL_SIZE, die_with_parent: bool = True,
                 own_session: bool = False, etcd_proxy: Path | None = None,
                 run_dir_prefix: str = "painchain-envtest-", label: str = "envtest",
                 extra_apiserver_args: tuple[str, ...] = (), controllers: bool = False):
        self.label = label  # prefix of the progress lines
        self.controllers = controllers  # + kube-controller-manager, kube-scheduler, fake Nodes (controllers.py)
        self._given_run_dir = Path(run_dir) if run_dir else None
        self.run_dir_prefix = run_dir_prefix
        self.etcd_proxy = etcd_proxy
        # Without die_with_parent a new session keeps the children alive after the parent.
        self.own_session = own_session or not die_with_parent
        self.ready_timeout = ready_timeout
        self.die_with_parent = die_with_parent
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.admin_token = secrets.token_hex(16)
        # No groups, no roles: tests bind these users to their own Roles.
        self.user_tokens = {f"user-{i}": secrets.token_hex(16) for i in range(user_pool_size)}
        self.run_dir: Path | None = None
        self.etcd_port = self.etcd_peer_port = self.etcd_proxy_port = self.api_port = None
        self._etcd_args: list[str] = []
        self._procs: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}

    # -- what tests use ------------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.api_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd_port}"

    @property
    def ca_file(self) -> str:
        # The apiserver self-signs into --cert-dir: this file holds the serving cert AND
        # the CA that signed it; its SANs include 127.0.0.1 and localhost.
        return str(self.run_dir / "certs" / "apiserver.crt")

    @property
    def ca_b64(self) -> str:
        return base64.b64encode(Path(self.ca_file).read_bytes()).decode()

    def write_kubeconfig(self, path, contexts: dict[str, str], *, current: str | None = None,
                         server: str | None = None, embed_ca: bool = False) -> str:
        """One cluster, one user and one context per (name -> token); CA by file path."""
        if not contexts:
            raise ValueError("write_kubeconfig needs at least one context")
        cluster = {"server": server or self.server}
        if embed_ca:
            cluster["certificate-authority-data"] = self.ca_b64
        else:
            cluster["certificate-authority"] = self.ca_file
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "envtest", "cluster": cluster}],
            "users": [{"name": name, "user": {"token": token}} for name, token in contexts.items()],
            "contexts": [{"name": name, "context": {"cluster": "envtest", "user": name}}
                         for name in contexts],
            "current-context": current or next(iter(contexts)),
        }
        # JSON is YAML: no yaml dependency needed to write it.
        Path(path).write_text(json.dumps(config, indent=2))
        return str(path)

    # -- lifecycle -------------------------------------------------------------------
    def start(self, *, out=None) -> "ControlPlane":
        out = out or sys.stderr
        apiserver, etcd = find_apiserver(out=out), find_etcd()
        t0 = time.monotonic()
        self.run_dir = self._given_run_dir or Path(tempfile.mkdtemp(prefix=self.run_dir_prefix))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        for attempt in range(3):
            try:
                self._start_etcd(etcd)
                self.timings["etcd_ready_s"] = time.monotonic() - t0
                if self.etcd_proxy is not None:
                    self._start_etcd_proxy()
                self._start_apiserver(apiserver)
                break
            except _PortTaken:
                self._stop_processes()
                if attempt == 2:
                    raise ControlPlaneError("ports kept being taken by other processes") from None
        if self.controllers:
            from .controllers import start_controllers

            start_controllers(self)
        self.timings["start_s"] = time.monotonic() - t0
        print(f"[{self.label}] control plane ready in {self.timings['start_s']:.1f}s "
              f"(etcd {self.timings['etcd_ready_s']:.1f}s) at {self.server}, run dir {self.run_dir}",
              file=out, flush=True)
        return self

    def stop(self, *, keep_run_dir: bool = False) -> None:
        self._stop_processes()
        if self.run_dir and not keep_run_dir and not self._given_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def cut_etcd_connections(self) -> None:
        """Closes every apiserver→etcd connection; etcd itself stays up, so the apiserver
        reconnects at once and resumes each etcd watch from the last revision it saw
        (which fails with "compacted" if etcd was compacted past it). Needs `etcd_proxy`."""
        if self.etcd_proxy is None:
            raise ControlPlaneError("cut_etcd_connections needs a ControlPlane started with etcd_proxy")
        self._procs["etcd-proxy"].send_signal(signal.SIGUSR1)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- internals -------------------------------------------------------------------
    def _write_credentials(self) -> None:
        d = self.run_dir
        (d / "certs").mkdir(exist_ok=True)
        _run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"])
        _run(["openssl", "rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub")])
        rows = [f'{self.admin_token},admin,uid-admin,"system:masters"']
        rows += [f"{token},{name},uid-{name}" for name, token in self.user_tokens.items()]
        tokens = d / "tokens.csv"
        tokens.write_text("\n".join(rows) + "\n")
        tokens.chmod(0o600)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.run_dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent if self.die_with_parent else None,
                                    start_new_session=self.own_session)
        finally:
            log.close()
        self._procs[name] = proc
        (self.run_dir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def _start_etcd(self, etcd: Path, *, timeout: float = 30.0) -> None:
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        self._spawn("etcd", [
            str(etcd), "--name", "envtest", "--data-dir", str(self.run_dir / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"envtest={peer}", "--initial-cluster-state", "new",
            "--log-level", "warn", "--logger", "zap",
            # Keeps WAL fsync cheap on CI disks; durability does not matter for tests.
            "--unsafe-no-fsync",
        ])
        self._wait("etcd", lambda s: s.get(f"{self.etcd_url}/health", timeout=2).status_code == 200,
                   timeout=timeout)

    def _start_etcd_proxy(self, *, timeout: float = 30.0) -> None:
        port_file = self.run_dir / "etcd-proxy.port"
        port_file.unlink(missing_ok=True)
        self._spawn("etcd-proxy", [sys.executable, str(self.etcd_proxy),
                                   "--upstream", f"{LOOPBACK}:{self.etcd_port}", "--port-file", str(port_file)])
        self._wait("etcd-proxy", lambda _: port_file.exists(), timeout=timeout)
        self.etcd_proxy_port = int(port_file.read_text())

    def _start_apiserver(self, apiserver: Path) -> None:
        self.api_port = free_port()
        d = self.run_dir
        self._spawn("kube-apiserver", [
            str(apiserver),
            f"--etcd-servers=http://{LOOPBACK}:{self.etcd_proxy_port or self.etcd_port}",
            f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.api_port}",
            f"--cert-dir={d / 'certs'}",
            # Services are never garbage collected here (namespaces never finish deleting):
            # a /16 leaves room for ~65k ClusterIPs over a long session.
            "--service-cluster-ip-range=10.0.0.0/16",
            "--endpoint-reconciler-type=none",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={d / 'tokens.csv'}",
            # No controller-manager creates the `default` ServiceAccount.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--profiling=false",
            *self.extra_apiserver_args,
        ])
        session = requests.Session()
        session.trust_env = False  # this machine exports REQUESTS_CA_BUNDLE; ignore it

        def ready(s):
            if not os.path.exists(self.ca_file):
                return False
            r = s.get(f"{self.server}/readyz", timeout=2, verify=self.ca_file,
                      headers={"Authorization": f"Bearer {self.admin_token}"})
            return r.status_code == 200

        self._wait("kube-apiserver", ready, timeout=self.ready_timeout, session=session)

    def _wait(self, name: str, check, *, timeout: float, session: requests.Session | None = None) -> None:
        session = session or _plain_session()
        proc = self._procs[name]
        deadline = time.monotonic() + timeout
        log = self.run_dir / f"{name}.log"
        while True:
            if proc.poll() is not None:
                tail = log_tail(log)
                if "address already in use" in tail:
                    raise _PortTaken(name)
                self._stop_processes()
                raise ControlPlaneError(f"{name} exited with rc={proc.returncode} while starting; "
                                        f"{log}:\n{tail}")
            try:
                if check(session):
                    return
            except (requests.RequestException, OSError):
                pass
            if time.monotonic() > deadline:
                self._stop_processes()
                raise ControlPlaneError(f"{name} not ready after {timeout:.0f}s; {log}:\n{log_tail(log)}")
            time.sleep(0.1)

    def _stop_process(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _stop_processes(self) -> None:
        # The apiserver first: it would log etcd errors for as long as it outlived etcd.
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd-proxy", "etcd"):
            self._stop_process(name)


class _PortTaken(Exception):
    pass


def _plain_session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
