"""Stand-in servers, each run in its own process so its CPU and fds are not the connector's.

    python -m bench.servers stream NAME=FILE...
                                          a kube-apiserver look-alike answering a watch of
                                          /.../namespaces/NAME/... with FILE (a pre-framed
                                          chunked body; the first FILE for other paths), then
                                          ending
    python -m bench.servers idle          keeps every watch open, one BOOKMARK per ~30 s per
                                          watch (first at a random offset), ends a watch at
                                          its timeoutSeconds like the apiserver does;
                                          GET /bench/silence?on=1 stops the bookmarks
                                          (a 1.20 apiserver sends none mid-stream)
    python -m bench.servers backend N     tests.fakebackend.FakeBackend with N integrations
                                          (bench-0 .. bench-N-1)

Each prints `READY {"port": ...}` and serves until terminated. Both apiserver look-alikes
speak just enough HTTP/1.1 for urllib3: keep-alive, GET /version, an empty paged list for
GET without watch=true, and GET /bench/stats (open watches, connections) for the benchmark.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from bench.common import raise_fd_limit  # noqa: E402

BOOKMARK_PERIOD = 30.0
_STATS = {"watching": 0, "connections": 0, "watches_served": 0, "bookmarks": 0}
_SILENT = [False]
_CHUNK_HEADERS = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")


def _answer(sock, status: str, doc) -> None:
    body = json.dumps(doc).encode()
    sock.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (status.encode(), len(body), body))


def _read_request(rfile):
    """(path, query) of the next request on a kept-alive connection, or None at EOF."""
    line = rfile.readline(65536)
    if not line:
        return None
    while True:
        header = rfile.readline(65536)
        if header in (b"\r\n", b"\n", b""):
            break
    target = line.split(b" ")[1].decode()
    parts = urlsplit(target)
    return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}


def _serve(sock, watch) -> None:
    _STATS["connections"] += 1
    rfile = sock.makefile("rb")
    try:
        while True:
            request = _read_request(rfile)
            if request is None:
                return
            path, query = request
            if path == "/version":
                _answer(sock, "200 OK", {"major": "1", "minor": "20", "gitVersion": "v1.20.2-bench"})
            elif path == "/bench/stats":
                _answer(sock, "200 OK", _STATS)
            elif path == "/bench/silence":
                _SILENT[0] = query.get("on") == "1"
                _answer(sock, "200 OK", {"silent": _SILENT[0]})
            elif query.get("watch") == "true":
                _STATS["watching"] += 1
                _STATS["watches_served"] += 1
                try:
                    watch(sock, query, path)
                finally:
                    _STATS["watching"] -= 1
            else:
                _answer(sock, "200 OK", {"kind": "List", "apiVersion": "v1", "items": [],
                                         "metadata": {"resourceVersion": "1000"}})
    except OSError:
        return  # the client went away (the benchmark stops reading, or stops)
    finally:
        _STATS["connections"] -= 1
        rfile.close()
        sock.close()


def _stream_watch(bodies: dict[str, bytes]):
    default = next(iter(bodies.values()))

    def watch(sock, _query, path: str) -> None:
        body = next((b for name, b in bodies.items() if f"/namespaces/{name}/" in path), default)
        sock.sendall(_CHUNK_HEADERS)
        view = memoryview(body)
        for start in range(0, len(body), 1 << 20):
            sock.sendall(view[start:start + (1 << 20)])
        sock.sendall(b"0\r\n\r\n")
    return watch


def _idle_watch(sock, query, _path: str) -> None:
    timeout = float(query.get("timeoutSeconds") or 300)
    period = float(query.get("bookmarkPeriod") or BOOKMARK_PERIOD)  # only the bare-socket ceiling sets it
    deadline = time.monotonic() + timeout
    sock.sendall(_CHUNK_HEADERS)
    next_at = time.monotonic() + random.random() * period
    rv = int(query.get("resourceVersion") or 1000)
    while True:
        now = time.monotonic()
        if next_at >= deadline:
            if _client_closed(sock, deadline - now):
                return
            break
        if _client_closed(sock, next_at - now):
            return
        next_at += period
        if _SILENT[0]:
            continue
        rv += 1
        line = json.dumps({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                                          "metadata": {"resourceVersion": str(rv)}}}).encode() + b"\n"
        sock.sendall(b"%x\r\n%s\r\n" % (len(line), line))
        _STATS["bookmarks"] += 1
    sock.sendall(b"0\r\n\r\n")


def _client_closed(sock, seconds: float) -> bool:
    """Wait up to `seconds`; True if the client closed the connection meanwhile (a watch
    client never sends anything, so any read result but a timeout means it is gone)."""
    sock.settimeout(max(0.0, seconds))
    try:
        sock.recv(1)
    except socket.timeout:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(None)
    return True


def _nodelay(handler):
    def handle(sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handler(sock)
    return handle


def main(argv: list[str]) -> None:
    raise_fd_limit()
    mode = argv[0]
    if mode == "backend":
        from tests.fakebackend import FakeBackend

        backend = FakeBackend().start()
        for index in range(int(argv[1])):
            backend.add_integration(f"bench-{index}", config={"name": "bench", "tags": [], "clusters": []})
        port = backend.port
    else:
        if mode == "stream":
            bodies = {}
            for spec in argv[1:]:  # NAME=FILE: served for paths containing /namespaces/NAME/
                name, path = spec.split("=", 1)
                with open(path, "rb") as f:
                    bodies[name] = f.read()
            watch = _stream_watch(bodies)
        else:
            watch = _idle_watch
        server = StreamServer(("127.0.0.1", 0), _nodelay(lambda sock: _serve(sock, watch)), backlog=4096)
        server.start()
        port = server.server_port
    print("READY " + json.dumps({"port": port}), flush=True)
    gevent.wait()  # until terminated


if __name__ == "__main__":
    main(sys.argv[1:])
