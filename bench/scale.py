"""#4 idle scale and #5 re-sync cost, in a fresh interpreter (`python -m bench.scale N`).

Watches are real: WatchPool.adjust(wanted_watches(integrations)) with integrations parsed
from backend-shaped documents, one cluster credential each (so one ApiClient per
integration, as in a multi-tenant deployment), all six resources. They point at a
`bench.servers idle` child that keeps every watch open and sends a BOOKMARK every ~30 s.

Stages (each adds integrations; adjust() only starts the missing watches):
  1. ~1,000 watches  -> RSS
  2. 1,000 integrations (6,000 watches) -> #5: re-parse equal documents, adjust again:
     restarts must be 0, CPU (time.process_time) of wanted_watches + adjust measured
  3. N watches (10,000) -> RSS, then CPU% of this process over 20 s of idle (stall probe
     on), and again after the probe-cost windows with the probe off
Then, with the pool stopped, two measurements that put the idle figure in context:
  - ceiling: N bare gevent sockets reading the same bookmarks (recv + de-chunk + json.loads),
    CPU% over the same window: the floor for any gevent client receiving this traffic;
  - probe cost: bookmarks off (every watch turns quiet, as between a 1.20 apiserver's
    watch start and end), then CPU% over PROBE_WINDOW with the stall probe on (every
    cluster probed, at the rate cap), and over the same window with it off;
  - re-watch cost: 1,000 watches with a 2-4 s timeoutSeconds, CPU per re-watch, to
    extrapolate the steady state at the default 300 s timeout (150-300 s streams), which a
    20 s window just after start-up never sees.
Prints one JSON line.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import psutil  # noqa: E402
import requests  # noqa: E402

from bench.common import Child, raise_fd_limit, rss  # noqa: E402
from painchain_connector.metrics import Metrics  # noqa: E402
from painchain_connector.orchestration import WatchPool, wanted_watches  # noqa: E402
from painchain_connector.schemas.integration import parse_integration  # noqa: E402
from painchain_connector.watching import WatchTiming  # noqa: E402

RESOURCES = 6
IDLE_WINDOW = 20.0
PROBE_WINDOW = 45.0


def documents(count: int, server: str) -> list[dict]:
    return [{
        "id": f"int-{i:05d}", "tenantId": f"tenant-{i % 50}", "type": "kubernetes", "status": "active",
        "name": f"cluster {i}",
        "config": {"name": f"cluster {i}", "tags": ["bench", f"team-{i % 7}"],
                   "clusters": [{"name": "prod", "server": server, "token": f"token-{i:05d}-bench"}]},
    } for i in range(count)]


def parse(docs: list[dict]) -> list:
    return [parse_integration(d).integration for d in docs]


class Scale:
    def __init__(self) -> None:
        self.fd_limit = raise_fd_limit()
        self.server = Child("bench.servers", "idle")
        port = self.server.ready()["port"]
        self.url = f"http://127.0.0.1:{port}"
        self.stats_session = requests.Session()
        self.stats_session.trust_env = False
        self.metrics = Metrics()
        # Streams of 30-60 min: no re-watch falls in a measured window (the first watches
        # would otherwise reach the default 150-300 s timeouts during the later windows, and a
        # re-watch costs ~1.6 ms). The re-watch cost is measured on its own (rewatch_cost)
        # and added for the steady state at the default timeout.
        self.pool = WatchPool(make_emit=lambda route: (lambda changes: None), timing=WatchTiming(watch_timeout=3600.0),
                              metrics=self.metrics, connect_timeout=10.0)

    def stats(self) -> dict:
        return self.stats_session.get(self.url + "/bench/stats", timeout=30).json()

    def grow(self, integrations: int, *, deadline: float = 240.0) -> dict:
        """Adjust to `integrations` and wait until the server holds every watch open."""
        started = time.perf_counter()
        counts = self.pool.adjust(wanted_watches(parse(documents(integrations, self.url))))
        # every watch: the pods watches' owner index watches (ReplicaSets, Jobs) and one
        # namespace watch per credential set too; the idle window must not start while some
        # of them are still connecting
        want = (len(self.pool.running) + len(self.pool.correlations.indexes)
                + sum(1 for entry in self.pool.notes._entries.values() if entry[2] is not None))
        while True:
            watching = self.stats()["watching"]
            if watching >= want:
                break
            if time.perf_counter() - started > deadline:
                break
            gevent.sleep(0.5)
        gevent.sleep(1.0)
        gc.collect()
        return {"integrations": integrations, "watches": want, "open_at_server": watching,
                "seconds_to_establish": round(time.perf_counter() - started, 1), "adjust": counts,
                "rss": rss(), "fds": psutil.Process().num_fds(), "restarts": self.restarts()}

    def restarts(self) -> int:
        return int(sum(s.value for m in self.metrics.watch_restarts.collect() for s in m.samples
                       if s.name.endswith("_total")))

    def resync(self, integrations: int, rounds: int = 3) -> dict:
        """#5: the same integrations again (freshly parsed, equal), wanted_watches + adjust."""
        docs = documents(integrations, self.url)
        cpu, wall, parse_cpu, wanted_cpu, counts = [], [], [], [], None
        for _ in range(rounds):
            p0 = time.process_time()
            fresh = parse(docs)
            parse_cpu.append(time.process_time() - p0)
            c0, w0 = time.process_time(), time.perf_counter()
            wanted = wanted_watches(fresh)
            c1 = time.process_time()
            counts = self.pool.adjust(wanted)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            wanted_cpu.append(c1 - c0)
            changed = {k: v for k, v in counts.items() if k != "unchanged" and v}
            if changed:
                break
        return {"integrations": integrations, "watches": len(self.pool.running), "counts": counts,
                "cpu_ms": round(min(cpu) * 1000, 2), "cpu_ms_all": [round(c * 1000, 2) for c in cpu],
                "wall_ms": round(min(wall) * 1000, 2),
                "wanted_watches_cpu_ms": round(min(wanted_cpu) * 1000, 2), "parse_cpu_ms": round(min(parse_cpu) * 1000, 1)}

    def idle(self) -> dict:
        proc = psutil.Process()
        before = self.stats()
        restarts = self.restarts()
        t0, w0 = proc.cpu_times(), time.perf_counter()
        gevent.sleep(IDLE_WINDOW)
        t1, w1 = proc.cpu_times(), time.perf_counter()
        after = self.stats()
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
        return {"window_s": round(w1 - w0, 1), "cpu_s": round(cpu, 3), "cpu_percent_of_core": 100 * cpu / (w1 - w0),
                "bookmarks_in_window": after["bookmarks"] - before["bookmarks"],
                "restarts_in_window": self.restarts() - restarts, "open_at_server": after["watching"]}

    def _cpu_window(self, seconds: float) -> dict:
        proc = psutil.Process()
        probes = self.probes()
        t0, w0 = proc.cpu_times(), time.perf_counter()
        gevent.sleep(seconds)
        t1, w1 = proc.cpu_times(), time.perf_counter()
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
        return {"window_s": round(w1 - w0, 1), "cpu_percent_of_core": 100 * cpu / (w1 - w0),
                "probes_per_s": (self.probes() - probes) / (w1 - w0)}

    def probes(self) -> int:
        return int(sum(s.value for m in self.metrics.stall_probes.collect() for s in m.samples
                       if s.name.endswith("_total")))

    def probe_cost(self) -> dict:
        """Idle CPU with every watch quiet: stall probe on, then off (same watches)."""
        self.stats_session.get(self.url + "/bench/silence?on=1", timeout=30)
        stalls = self.stall_restarts()
        interval = self.pool.prober.settings.interval
        gevent.sleep(interval * 1.5)  # every watch quiet for a whole interval; probing under way
        on = self._cpu_window(PROBE_WINDOW)
        self.pool._probing.kill(block=True, timeout=10)  # the probe off, the watches untouched
        self.pool.prober.stop()
        gevent.sleep(2.0)
        off = self._cpu_window(PROBE_WINDOW)
        self.stats_session.get(self.url + "/bench/silence?on=0", timeout=30)
        return {"on": on, "off": off, "interval": interval, "rate": self.pool.prober.settings.rate,
                "clusters": len(self.pool.watches_by_cluster()), "stall_restarts_during": self.stall_restarts() - stalls,
                "outcomes": {s.labels["outcome"]: s.value for m in self.metrics.stall_probes.collect()
                             for s in m.samples if s.name.endswith("_total")}}

    def stall_restarts(self) -> int:
        return int(sum(s.value for m in self.metrics.watch_restarts.collect() for s in m.samples
                       if s.name.endswith("_total") and s.labels.get("reason") == "stall"))

    def probe_alone(self, probes: int = 400, rate: float = 10.0) -> dict:
        """CPU of the probe requests alone (no watches open): `probes` short watches paced at
        `rate`, round-robin over 50 clients (kept-alive connections, as in production)."""
        from painchain_connector.clusters import ListerWatcher, build_api_client

        clients = [build_api_client(i.clusters[0], connect_timeout=10.0)
                   for i in parse(documents(50, self.url))]
        lws = [ListerWatcher(api, path="/api/v1/pods", connect_timeout=10.0) for api in clients]

        def one(lw):
            for _ in lw.watch(resource_version="1000", timeout_seconds=1, read_timeout=10.0):
                pass

        group = gevent.pool.Group()
        proc = psutil.Process()
        t0, w0 = proc.cpu_times(), time.perf_counter()
        for i in range(probes):
            group.spawn(one, lws[i % len(lws)])
            gevent.sleep(1.0 / rate)
        group.join(timeout=30)
        t1, w1 = proc.cpu_times(), time.perf_counter()
        for api in clients:
            api.close()
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
        per_probe = cpu / probes
        return {"probes": probes, "seconds": round(w1 - w0, 1), "cpu_s": round(cpu, 3),
                "cpu_us_per_probe": 1e6 * per_probe, "percent_at_cap": 100 * per_probe * rate}

    def bare_ceiling(self, sockets: int) -> dict:
        """The same traffic read by bare gevent sockets: no urllib3, no Reflector."""
        import socket

        host, port = "127.0.0.1", int(self.url.rsplit(":", 1)[1])
        request = (b"GET /api/v1/pods?watch=true&timeoutSeconds=100000 HTTP/1.1\r\nHost: x\r\n"
                   b"Accept: application/json\r\n\r\n")
        events = [0]

        def reader(sock):
            try:
                sock.sendall(request)
                sock.recv(65536)  # the response head
                while True:
                    data = sock.recv(65536)
                    if not data:
                        return
                    for part in data.split(b"\r\n"):
                        if part.startswith(b"{"):
                            json.loads(part)
                            events[0] += 1
            except OSError:
                return

        socks = []
        for _ in range(sockets):
            sock = socket.create_connection((host, port), timeout=10)
            sock.settimeout(330.0)  # a pending read timer per socket, as the watches have
            socks.append(sock)
        readers = [gevent.spawn(reader, s) for s in socks]
        while self.stats()["watching"] < sockets:
            gevent.sleep(0.5)
        gevent.sleep(1.0)
        proc = psutil.Process()
        t0, w0, e0 = proc.cpu_times(), time.perf_counter(), events[0]
        gevent.sleep(IDLE_WINDOW)
        t1, w1 = proc.cpu_times(), time.perf_counter()
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
        seen = events[0] - e0
        gevent.killall(readers, timeout=10)
        for sock in socks:
            sock.close()
        return {"sockets": sockets, "cpu_s": round(cpu, 3), "cpu_percent_of_core": 100 * cpu / (w1 - w0),
                "bookmarks_in_window": seen, "cpu_us_per_bookmark": 1e6 * cpu / max(seen, 1)}

    def rewatch_cost(self, watches: int = 1000, seconds: float = 10.0) -> dict:
        """CPU per re-watch (stream ends at timeoutSeconds, the Reflector watches again)."""
        pool = WatchPool(make_emit=lambda route: (lambda changes: None), timing=WatchTiming(watch_timeout=4.0),
                         metrics=Metrics(), connect_timeout=10.0)
        integrations = -(-watches // RESOURCES)
        docs = documents(integrations, self.url)
        for d in docs:
            d["id"] = "rw-" + d["id"]
            d["config"]["clusters"][0]["token"] += "-rw"
        pool.adjust(wanted_watches(parse(docs)))
        while self.stats()["watching"] < integrations * RESOURCES * 0.9:
            gevent.sleep(0.5)
        gevent.sleep(5.0)  # past the first 2-4 s streams: re-watches are under way
        proc = psutil.Process()
        s0, t0, w0 = self.stats(), proc.cpu_times(), time.perf_counter()
        gevent.sleep(seconds)
        t1, w1, s1 = proc.cpu_times(), time.perf_counter(), self.stats()
        cpu = (t1.user - t0.user) + (t1.system - t0.system)
        rewatches = s1["watches_served"] - s0["watches_served"]
        bookmarks = s1["bookmarks"] - s0["bookmarks"]
        pool.stop_all()
        return {"watches": integrations * RESOURCES, "rewatches_per_s": rewatches / (w1 - w0),
                "bookmarks": bookmarks, "cpu_s": round(cpu, 3), "cpu_us_per_rewatch": 1e6 * cpu / max(rewatches, 1)}

    def close(self) -> None:
        self.server.stop()


def main(target_watches: int) -> dict:
    scale = Scale()
    base = rss()
    out = {"fd_limit": list(scale.fd_limit), "rss_empty": base}
    try:
        # Each watch holds one socket (plus one kept-alive per client): stay under the fd limit.
        room = (scale.fd_limit[0] - 200) // (RESOURCES + 1) * RESOURCES
        integrations = -(-min(target_watches, room) // RESOURCES)
        resync = min(1000, integrations)  # stages only grow: adjust() must never stop watches here
        out["stage_1k"] = scale.grow(min(resync, -(-1000 // RESOURCES)))
        out["stage_resync"] = scale.grow(resync)
        out["resync"] = scale.resync(resync)
        out["fd_limited"] = target_watches > room
        out["stage_max"] = scale.grow(integrations)
        out["idle"] = scale.idle()
        out["probe_cost"] = scale.probe_cost()  # ends with the probe off and the bookmarks back on
        gevent.sleep(5.0)
        out["idle_probe_off"] = scale.idle()  # what receiving the bookmarks costs, the probe aside
        scale.pool.stop_all()
        gc.collect()
        out["idle_ceiling"] = scale.bare_ceiling(out["stage_max"]["open_at_server"])
        out["probe_alone"] = scale.probe_alone()
        out["rewatch"] = scale.rewatch_cost()
    finally:
        scale.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)))
