"""A fault-injecting TCP proxy for tests, put between a client and the apiserver.

Bytes pass through untouched, so TLS is end to end: the client verifies the apiserver's
own certificate (its SANs include 127.0.0.1, so `https://127.0.0.1:<proxy port>` verifies).
Faults: cut every connection or the newest one, stall (sockets stay open, nothing is
forwarded either way), hold the open connections only (new ones flow: a wedged proxy or
NAT entry), refuse new connections for a while, add latency per chunk.

Greenlets: the listening StreamServer, and per connection one handler greenlet (the
client→upstream pump) plus one upstream→client pump; all live in `self._greenlets`, a
Group the proxy owns, and `close()` kills them all. A pump that fails closes its
connection (both sockets): the client sees the cut as it would see a real one.
"""
from __future__ import annotations

import itertools
import socket as _stdsocket

import gevent
from gevent import socket
from gevent.event import Event
from gevent.pool import Group
from gevent.server import StreamServer

CHUNK = 64 * 1024


class Connection:
    """One accepted client connection and its upstream twin."""

    def __init__(self, number: int, client: socket.socket, upstream: socket.socket):
        self.number, self.client, self.upstream = number, client, upstream
        self.closed = False
        self.bytes_up = self.bytes_down = 0
        self.flowing = Event()
        self.flowing.set()

    def close(self, *, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.flowing.set()  # a held pump wakes up, sees `closed` and ends
        for sock in (self.client, self.upstream):
            try:
                if reset:  # RST instead of FIN: the peer sees ECONNRESET
                    sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                else:
                    sock.shutdown(_stdsocket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()  # wakes a greenlet blocked in recv() on it


class FaultyProxy:
    """`FaultyProxy((host, port)).start()`; point a client at `proxy.url`."""

    def __init__(self, upstream: tuple[str, int], *, listen: tuple[str, int] = ("127.0.0.1", 0),
                 scheme: str = "https"):
        self.upstream, self.scheme = upstream, scheme
        self._greenlets = Group()
        self._server = StreamServer(listen, self._handle, spawn=self._greenlets.spawn)
        self._connections: dict[int, Connection] = {}
        self._numbers = itertools.count(1)
        self._flowing = Event()
        self._flowing.set()
        self._refusing = False
        self._resume_timer = None
        self._latency = 0.0
        self.accepted = 0   # every accepted TCP connection, refused ones included
        self.refused = 0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> "FaultyProxy":
        self._server.start()
        return self

    def close(self) -> None:
        self._server.stop(timeout=0)
        self._flowing.set()
        self.release()
        self.cut_all()
        if self._resume_timer:
            self._resume_timer.kill()
        self._greenlets.kill(block=True, timeout=5)

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self._connections.values() if not c.closed)

    # -- faults ----------------------------------------------------------------------
    def cut_all(self, *, reset: bool = False) -> int:
        """Closes every open connection, both sides. Returns how many."""
        conns = [c for c in self._connections.values() if not c.closed]
        for c in conns:
            c.close(reset=reset)
        return len(conns)

    def cut_one(self, *, reset: bool = False) -> bool:
        """Closes the most recently accepted open connection. False if none was open."""
        for number in sorted(self._connections, reverse=True):
            conn = self._connections[number]
            if not conn.closed:
                conn.close(reset=reset)
                return True
        return False

    def stall(self) -> None:
        """Keeps every socket open but forwards nothing, either way, until unstall()."""
        self._flowing.clear()

    def unstall(self) -> None:
        self._flowing.set()

    def hold_open(self) -> int:
        """Keeps the connections open NOW but forwards nothing on them, either way, until
        release(); connections made later flow. Returns how many are held."""
        conns = [c for c in self._connections.values() if not c.closed]
        for c in conns:
            c.flowing.clear()
        return len(conns)

    def release(self) -> None:
        """Ends hold_open()."""
        for c in self._connections.values():
            c.flowing.set()

    def refuse(self, seconds: float | None = None) -> None:
        """New connections are closed at once, for `seconds` or until resume()."""
        self._refusing = True
        if self._resume_timer:
            self._resume_timer.kill()
            self._resume_timer = None
        if seconds is not None:
            self._resume_timer = gevent.spawn_later(seconds, self.resume)

    def resume(self) -> None:
        """Ends refuse()."""
        self._refusing = False

    def latency(self, seconds: float) -> None:
        """Delays each forwarded chunk by `seconds` (0 turns it off)."""
        self._latency = max(0.0, seconds)

    # -- data path -------------------------------------------------------------------
    def _handle(self, client: socket.socket, _address) -> None:
        self.accepted += 1
        if self._refusing:
            self.refused += 1
            client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        conn = Connection(next(self._numbers), client, upstream)
        self._connections[conn.number] = conn
        down = self._greenlets.spawn(self._pump, conn, upstream, client, "down")
        try:
            self._pump(conn, client, upstream, "up")
        finally:
            down.join()
            self._connections.pop(conn.number, None)

    def _pump(self, conn: Connection, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while not conn.closed:
                self._flowing.wait()
                conn.flowing.wait()
                data = src.recv(CHUNK)
                if not data:
                    break
                self._flowing.wait()   # a stall that began while we waited for data
                conn.flowing.wait()
                if self._latency:
                    gevent.sleep(self._latency)
                if conn.closed:
                    break
                dst.sendall(data)
                if direction == "up":
                    conn.bytes_up += len(data)
                else:
                    conn.bytes_down += len(data)
        except OSError:
            pass   # the other pump (or cut_*) closed the sockets: the connection is over
        finally:
            conn.close()


def _main(argv: list[str]) -> int:
    """Standalone, as a child process of ControlPlane between kube-apiserver and etcd, so
    that the apiserver's etcd traffic never waits on the test process's greenlets.
    SIGUSR1 cuts every connection; SIGTERM stops."""
    import argparse
    import os
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port")
    parser.add_argument("--port-file", required=True, help="where to write the listening port")
    args = parser.parse_args(argv)
    host, port = args.upstream.rsplit(":", 1)
    proxy = FaultyProxy((host, int(port)), scheme="http").start()
    stopped = Event()
    gevent.signal_handler(signal.SIGUSR1, proxy.cut_all)
    gevent.signal_handler(signal.SIGTERM, stopped.set)
    tmp = f"{args.port_file}.tmp"
    with open(tmp, "w") as f:
        f.write(str(proxy.port))
    os.replace(tmp, args.port_file)   # readers never see a half-written port
    stopped.wait()
    proxy.close()
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(_main(sys.argv[1:]))
