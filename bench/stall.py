"""#8 failure detection: how long each kind of broken watch takes to notice, with the
connector's DEFAULT settings, on the real kube-apiserver behind tests.envtest's FaultyProxy
(`python -m bench.stall`, in a fresh interpreter; needs the envtest binaries).

Scenarios (one services watch, one namespace; each a fresh pool and proxy):
  cut      the proxy closes the watch's connection; a service is created: seconds until
           it is emitted
  held     the proxy keeps the watch's connection open and silent, new connections flow
           (a wedged NAT entry, proxy or apiserver stream); a service is created: seconds
           until it is emitted (the stall probe's job)
  path     the proxy holds every connection, new ones too: seconds until the watch leaves
           "watching" (shows unreachable)
A dead peer (no FIN, no RST, no answer) cannot be made on loopback without packet
filtering; TCP keepalive's bound is reported from its settings. Prints one JSON line.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

from bench.common import integration  # noqa: E402
from painchain_connector import clusters  # noqa: E402
from painchain_connector.metrics import Metrics  # noqa: E402
from painchain_connector.orchestration import WatchPool, wanted_watches  # noqa: E402
from painchain_connector.settings import Settings  # noqa: E402
from painchain_connector.watching import WatchTiming  # noqa: E402
from tests.envtest.builders import make_service  # noqa: E402
from tests.envtest.controlplane import ControlPlane  # noqa: E402
from tests.envtest.kube import Kube  # noqa: E402
from tests.envtest.proxy import FaultyProxy  # noqa: E402


def _until(condition, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        gevent.sleep(0.1)
    return None


def scenario(cp: ControlPlane, kube: Kube, fault: str, *, timeout: float) -> dict:
    namespace = f"bench-stall-{uuid.uuid4().hex[:6]}"
    kube.create("namespaces", None, {"metadata": {"name": namespace}})
    proxy = FaultyProxy(("127.0.0.1", cp.api_port)).start()
    defaults = Settings()
    titles: list[str] = []
    integ = integration(id="bench-stall", server=proxy.url, token=cp.admin_token, ca_b64=cp.ca_b64,
                        namespace=namespace, resource="services")
    pool = WatchPool(make_emit=lambda route: (lambda changes: titles.extend(c.title for c in changes)),
                     metrics=Metrics(), connect_timeout=defaults.connect_timeout,
                     timing=WatchTiming(watch_timeout=defaults.watch_timeout, stall_margin=defaults.stall_margin))
    try:
        pool.adjust(wanted_watches([integ]))
        if _until(lambda: list(pool.states().values()) == ["watching"], 30) is None:
            return {"error": "the watch did not start"}
        # Quiet for a while first, as a real watch would be before it breaks.
        gevent.sleep(defaults.stall_probe_interval * 1.2)
        if fault == "cut":
            proxy.cut_all()
        elif fault == "held":
            proxy.hold_open()
        else:
            proxy.stall()
        started = time.monotonic()
        if fault == "path":
            seconds = _until(lambda: list(pool.states().values()) != ["watching"], timeout)
        else:
            kube.create("services", namespace, make_service("probe-me"))
            seconds = _until(lambda: "Service Created: probe-me" in titles, timeout)
        return {"seconds": None if seconds is None else round(seconds, 1), "timeout": timeout,
                "state": list(pool.states().values()), "since_fault": round(time.monotonic() - started, 1)}
    finally:
        proxy.unstall()
        proxy.release()
        pool.stop_all()
        proxy.close()
        kube.delete("namespaces", None, namespace, missing_ok=True)


def main() -> dict:
    defaults = Settings()
    out = {
        "settings": {"watch_timeout": defaults.watch_timeout, "stall_margin": defaults.stall_margin,
                     "stall_probe_interval": defaults.stall_probe_interval,
                     "keepalive": [clusters.KEEPALIVE_IDLE, clusters.KEEPALIVE_INTERVAL, clusters.KEEPALIVE_COUNT]},
        # the read timeout alone (before the probe): timeoutSeconds is drawn from 50-100 % of
        # WATCH_TIMEOUT, plus STALL_MARGIN
        "read_timeout_bound": [defaults.watch_timeout / 2 + defaults.stall_margin,
                               defaults.watch_timeout + defaults.stall_margin],
        "dead_peer_bound": clusters.KEEPALIVE_IDLE + clusters.KEEPALIVE_INTERVAL * clusters.KEEPALIVE_COUNT,
    }
    with ControlPlane() as cp:
        kube = Kube(server=cp.server, ca_file=cp.ca_file, token=cp.admin_token)
        for fault in ("cut", "held", "path"):
            out[fault] = scenario(cp, kube, fault, timeout=180.0)
        kube.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()
