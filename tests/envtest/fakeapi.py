"""A small apiserver look-alike of the tests' own, hostile on demand.

For what the real kube-apiserver cannot be made to do: answer a list that never ends, a
watch line that never ends, `continue` tokens forever, one huge object, a watch that
sends one BOOKMARK and closes at once, a `/version` that is not JSON. Plain HTTP/1.1 on a
loopback port (keep-alive, chunked streams), enough for urllib3 and the kubernetes client.
Every request is recorded (`requests`: method, path, query, headers), and `bytes_sent`
counts what the streams wrote, so a test can show how much a client read before it gave up.

Behaviour is chosen per answer by attributes the test sets:
    version: "ok" | "not-json"
    listing: "empty" | "endless" | "endless-continue" | "huge-object" | "many-objects" (ignores `limit`)
    watching: "quiet" | "endless-line" | "bookmark-then-close"

Greenlets: the StreamServer's, one per connection (a Group this object owns; `stop()`
kills them all).
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import gevent
from gevent.pool import Group
from gevent.server import StreamServer

_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
_BLOCK = 64 * 1024


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{i}", "namespace": "default", "uid": f"uid-{i}", "resourceVersion": str(i + 1)},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}, "status": {"phase": "Running"}}


class FakeApiServer:
    def __init__(self) -> None:
        self.version = "ok"
        self.listing = "empty"
        self.watching = "quiet"
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.bytes_sent = 0
        self._greenlets = Group()
        self._server = StreamServer(("127.0.0.1", 0), self._handle, spawn=self._greenlets.spawn)

    def start(self) -> "FakeApiServer":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout=0)
        self._greenlets.kill(block=True, timeout=5)

    def __enter__(self) -> "FakeApiServer":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def count(self, *, watch: bool) -> int:
        return sum(1 for _m, path, q, _h in self.requests if path != "/version" and (q.get("watch") == "true") == watch)

    # -- HTTP ---------------------------------------------------------------------------

    def _handle(self, sock, _address) -> None:
        rfile = sock.makefile("rb")
        try:
            while True:
                line = rfile.readline(65536)
                if not line:
                    return
                method, target = line.split(b" ")[:2]
                headers = {}
                while True:
                    header = rfile.readline(65536)
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                parts = urlsplit(target.decode())
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                self.requests.append((method.decode(), parts.path, query, headers))
                if not self._answer(sock, parts.path, query):
                    return  # the answer ended the connection
        except OSError:
            return  # the client went away mid-stream: what a bounded reader does
        finally:
            rfile.close()
            sock.close()

    def _json(self, sock, doc, *, status: str = "200 OK") -> bool:
        body = json.dumps(doc).encode()
        sock.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (status.encode(), len(body), body))
        return True

    def _answer(self, sock, path: str, query: dict) -> bool:
        if path == "/version":
            if self.version == "not-json":
                body = b"<html>this is a login page</html>"
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                return True
            return self._json(sock, {"major": "1", "minor": "20", "gitVersion": "v1.20.2-fake"})
        if query.get("watch") == "true":
            return self._watch(sock, query)
        return self._list(sock, query)

    def _stream(self, sock, pieces) -> None:
        """Chunked body from an iterable of bytes, forever if it is endless."""
        sock.sendall(_CHUNKED)
        for piece in pieces:
            sock.sendall(_chunk(piece))
            self.bytes_sent += len(piece)
        sock.sendall(b"0\r\n\r\n")

    def _list(self, sock, query: dict) -> bool:
        mode = self.listing
        meta = {"resourceVersion": "100"}
        if mode == "endless":  # '{"items": [' and then objects, never closed
            objects = (json.dumps(pod(i)).encode() + b"," for i in range(10**12))
            self._stream(sock, _cat([b'{"kind": "PodList", "items": ['], objects))
            return False
        if mode == "endless-continue":  # one object per page, always one more page
            page = int(query.get("continue", "0") or 0)
            return self._json(sock, {"kind": "PodList", "metadata": {**meta, "continue": str(page + 1)},
                                     "items": [pod(page)]})
        if mode == "huge-object":  # one pod with a 64 MiB annotation
            head = json.dumps(pod(0))[:-1].encode() + b', "junk": "'
            self._stream(sock, _cat([b'{"kind": "PodList", "metadata": {"resourceVersion": "100"}, "items": [', head],
                                    (b"x" * _BLOCK for _ in range(1024)), [b'"}]}']))
            return False
        if mode == "many-objects":  # ignores `limit`: 5,000 tiny objects (about 500 KB) in one page
            items = [{"metadata": {"name": f"p-{i}", "uid": f"uid-{i}", "resourceVersion": "1"}} for i in range(5_000)]
            return self._json(sock, {"kind": "PodList", "metadata": meta, "items": items})
        return self._json(sock, {"kind": "PodList", "metadata": meta, "items": []})

    def _watch(self, sock, query: dict) -> bool:
        mode = self.watching
        if mode == "endless-line":  # a JSON event that never ends: no newline, ever
            self._stream(sock, _cat([b'{"type": "ADDED", "object": {"junk": "'],
                                    (b"x" * _BLOCK for _ in range(10**12))))
            return False
        if mode == "bookmark-then-close":
            rv = query.get("resourceVersion") or "100"
            line = json.dumps({"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": rv}}})
            self._stream(sock, [line.encode() + b"\n"])
            return True
        sock.sendall(_CHUNKED)  # quiet: open until timeoutSeconds, nothing in it
        gevent.sleep(float(query.get("timeoutSeconds", "5")))
        sock.sendall(b"0\r\n\r\n")
        return True


def _cat(*iterables):
    for iterable in iterables:
        yield from iterable
