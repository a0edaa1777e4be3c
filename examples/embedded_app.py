"""Embedding the connector in an existing gevent WSGI application.

    python examples/embedded_app.py --config integrations.yaml --sink events.jsonl --port 8000

The HOST owns the process: it monkey-patches first, chooses the log sinks, installs the
signal handlers and decides when to stop. The library does none of that; `Connector`
only starts greenlets in the host's hub (`start()` returns at once) and stops on request.
"""
from gevent import monkey

monkey.patch_all()  # the host patches, before anything imports ssl/requests/kubernetes

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from painchain_connector import Connector, load_settings  # noqa: E402
from painchain_connector.logs import configure_logging  # noqa: E402


def make_app(connector: Connector):
    def app(environ, start_response):
        ready, details = connector.readiness()
        body = json.dumps({"app": "hello from the host", "connectorReady": ready, "connector": details}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="integrations file (JSON/YAML list)")
    parser.add_argument("--sink", required=True, help="file the events are appended to, as JSON lines")
    parser.add_argument("--port", type=int, default=8000, help="the host application's port (0 = any)")
    args = parser.parse_args(argv)

    configure_logging(level="INFO", fmt="json")  # the host's choice; or logger.enable("painchain_connector")
    settings = load_settings(
        environ={}, overrides={"config_file": args.config, "sink": args.sink, "health_port": 0, "resync_interval": 5}
    )
    connector = Connector(settings)
    server = WSGIServer(("127.0.0.1", args.port), make_app(connector), log=None)
    connector.start()
    server.start()
    print(f"listening on {server.server_port}", flush=True)

    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    stop.wait()
    server.stop(timeout=2)
    lost = connector.stop(timeout=5)
    print(f"stopped cleanly, {lost} events lost", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
