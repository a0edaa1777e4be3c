"""`painchain-connector --demo [--keep]`: the connector at work on an embedded cluster.

Only `cli.run` calls `run_demo`, after gevent's monkey-patching; like the CLI it owns the
process: log sinks, SIGINT/SIGTERM handlers (installed when `run_demo` runs, never on
import), and exit codes (0 story done, 1 the demo failed, 2 bad usage, 130 interrupted).

`Demo` owns everything the demo starts: the control plane's child processes and run
directory (temporary: `painchain-demo-*`, which also holds the integrations file and the
kubeconfig), the Connector and its greenlets, and the `demo:story` greenlet. `close()`
stops them in that reverse order whatever state they reached, so a Ctrl-C at any moment
(even during a first-time build) leaves no process and no directory behind.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass

import gevent
from gevent import Greenlet
from gevent.event import Event

from ..logs import configure_logging
from ..settings import Settings, SettingsError

DEFAULT_PACE = 3.0
READY_TIMEOUT = 60.0
BEAT_TIMEOUT = 30.0


@dataclass(frozen=True)
class DemoOptions:
    pace: float  # DEMO_PACE: seconds between story steps
    keep: bool  # --keep: leave the cluster and the connector running after the story


def demo_options(*, keep: bool, environ) -> DemoOptions:
    raw = environ.get("DEMO_PACE", "")
    try:
        pace = float(raw) if raw.strip() else DEFAULT_PACE
    except ValueError:
        pace = -1.0
    if not 0 <= pace <= 60:
        raise SettingsError(f"invalid settings: DEMO_PACE: seconds between story steps, 0 to 60 (got {raw!r})")
    return DemoOptions(pace=pace, keep=keep)


class DemoFailed(Exception):
    """The demo could not go on; the message says why and is safe to print."""


class Demo:
    def __init__(self, settings: Settings, options: DemoOptions, *, stdout, stderr) -> None:
        from .story import Recorder

        self.settings, self.options = settings, options
        self.stdout = stdout
        # The story and the summary go with the events when a person reads stdout; else to
        # stderr, so that stdout stays pure JSON lines (and tox does not paint them as errors).
        self.talk = stdout if stdout.isatty() else stderr
        self.control_plane = None
        self.connector = None
        self.kubeconfig: str | None = None
        self.kube = None
        self._files = []
        self.recorder = Recorder(forward=self._posters())
        self.done = False
        self.failure: str | None = None

    def say(self, text: str) -> None:
        print(f"[demo] {text}", file=self.talk, flush=True)

    def _posters(self):
        """JSON lines to --sink and/or to stdout when it is not a terminal; readable lines on a terminal."""
        from ..delivering.sinks import JsonLinesSink
        from .console import ReadableSink

        posters = []
        if self.settings.sink is not None:
            sink = JsonLinesSink(self.settings.sink)
            self._files.append(sink)
            posters.append(sink.post)
        if self.stdout.isatty():
            posters.append(ReadableSink(self.stdout).post)
        elif self.settings.sink is None:
            posters.append(JsonLinesSink(self.stdout).post)
        return posters

    # -- the demo's greenlet ----------------------------------------------------------------

    def run(self) -> None:
        """The `demo:story` greenlet: a failure the user can act on ends it with `failure` set."""
        from .kube import KubeError
        from .story import StoryStalled

        try:
            self._run()
        except (DemoFailed, StoryStalled, KubeError) as exc:
            self.failure = str(exc)

    def _run(self) -> None:
        from ..running import Connector
        from .controlplane import BUILD_SCRIPT, ControlPlane, ControlPlaneError, find_apiserver
        from .kube import Kube
        from .story import NAMESPACE, expected_titles, play, steps

        started = time.monotonic()
        try:
            find_apiserver(build=False)
            self.say("starting a Kubernetes control plane: etcd + kube-apiserver from the cache (about 10 s)")
        except ControlPlaneError:
            self.say("no kube-apiserver in the cache yet: building it once from Debian's source package "
                     "(about 9 minutes on 2 cores, needs root for apt); progress follows")
        self.control_plane = cp = ControlPlane(own_session=True, run_dir_prefix="painchain-demo-", label="demo")
        try:
            cp.start(out=self.talk)
        except ControlPlaneError as exc:
            raise DemoFailed(f"{exc}\nSet KUBE_APISERVER_BIN / ETCD_BIN to binaries you have, or run "
                             f"the build by hand: bash {BUILD_SCRIPT}") from None
        self.kube = kube = Kube(server=cp.server, ca_file=cp.ca_file, token=cp.admin_token)
        kube.create("namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.kubeconfig = cp.write_kubeconfig(cp.run_dir / "kubeconfig", {"painchain-demo": cp.admin_token})
        integrations = self._write_integrations(cp)
        os.chmod(self.kubeconfig, 0o600)
        self.connector = Connector(self.settings.replace(config_file=integrations), poster=self.recorder.post)
        self.connector.start()
        if not self.connector.ready.wait(READY_TIMEOUT):
            raise DemoFailed(f"the connector did not list the cluster within {READY_TIMEOUT:.0f}s")
        self.say(f"the connector watches it (local mode, integrations from {integrations.name}); "
                 f"the story starts, {self.options.pace:g} s between steps")
        story = steps(kube)
        story_started = time.monotonic()
        play(story, recorder=self.recorder, pace=self.options.pace, say=self.say, timeout=BEAT_TIMEOUT)
        self.done = True
        from .console import summary

        for text in summary(self.recorder.records, expected=expected_titles(story),
                            elapsed=time.monotonic() - story_started, keep_hint=not self.options.keep):
            print(text, file=self.talk)
        self.say(f"done in {time.monotonic() - started:.0f} s")
        if self.options.keep:
            self._explain_keep()
        self.talk.flush()

    def _write_integrations(self, cp):
        """The integrations file local mode reads (`--config`), pointing at the embedded cluster."""
        path = cp.run_dir / "integrations.json"
        doc = [{"id": "demo", "type": "kubernetes", "name": "demo", "config": {
            "name": "demo", "tags": ["demo"],
            "clusters": [{"name": "demo", "server": cp.server, "token": cp.admin_token, "certificate": cp.ca_b64}],
        }}]
        path.write_text(json.dumps(doc, indent=2))
        path.chmod(0o600)
        return path

    def _explain_keep(self) -> None:
        run_dir = self.control_plane.run_dir
        for text in (
            "--keep: the cluster and the connector keep running. In another terminal:",
            f"    export KUBECONFIG={self.kubeconfig}",
            "    kubectl -n demo scale deployment web --replicas=5",
            "    kubectl -n demo create service clusterip api --tcp=80:8080",
            "  and watch the events here. No controllers or kubelet run: a Deployment gets no pods by itself.",
            f"  Ctrl-C stops everything and removes {run_dir}.",
        ):
            self.say(text)

    # -- stopping -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stops the connector, then the control plane (its children, its run directory)."""
        try:
            if self.kube is not None:
                self.kube.close()
            if self.connector is not None:
                self.connector.stop(timeout=2)
        finally:
            try:
                if self.control_plane is not None:
                    self.control_plane.stop()
            finally:
                for sink in self._files:
                    sink.close()


def run_demo(args, *, environ=None, stdout=None, stderr=None) -> int:
    from ..cli import settings_from

    environ = os.environ if environ is None else environ
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if args.backend or args.config_file:
        print("painchain-connector: --demo brings its own cluster and integration; without --demo, "
              "--config and --backend point the connector at yours (see --help)", file=stderr)
        return 2
    try:
        # The demo's own defaults, beneath the environment and the flags: quiet logs, no health port.
        settings = settings_from(args, environ={"LOG_LEVEL": "WARNING", "HEALTH_PORT": "0", **environ})
        options = demo_options(keep=args.keep, environ=environ)
    except SettingsError as exc:
        print(f"painchain-connector: {exc}", file=stderr)
        return 2
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    stop = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    demo = Demo(settings.replace(backend_url=None), options, stdout=stdout, stderr=stderr)
    story = Greenlet(demo.run)
    story.name = "demo:story"
    story.start()
    try:
        gevent.wait([stop, story], count=1)
        if options.keep and demo.done and not stop.is_set():
            stop.wait()
    finally:
        if not story.dead:
            demo.say("stopping: the story, the connector, the control plane")
        story.kill(block=True, timeout=10)
        demo.close()
    if demo.failure is not None:
        demo.say(f"failed: {demo.failure}")
        return 1
    if story.exception is not None and not isinstance(story.exception, gevent.GreenletExit):
        return 1  # a bug: the hub has printed its traceback
    if not demo.done:
        demo.say("interrupted; nothing is left running")
        return 130
    return 0
