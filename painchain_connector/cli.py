"""Command line: flags and environment -> Settings, log sinks, signals, run until stopped.

Only the entry point (after monkey-patching) imports this module.
"""
from __future__ import annotations

import argparse
import signal
import sys

import gevent
import gevent.event
from ._log import logger

from .logs import configure_logging
from .settings import DEFAULT_BACKEND_URL, ENV_VARS, Settings, SettingsError, load_settings

_FLAGS = {  # flag -> (settings field, type, help)
    "--resync-interval": ("resync_interval", float, "seconds between integration re-syncs (60)"),
    "--log-level": ("log_level", str, "TRACE, DEBUG, INFO, WARNING, ERROR (INFO)"),
    "--log-format": ("log_format", str, "text (human) or json (one object per line) (text)"),
    "--health-port": ("health_port", int, "port of /healthz /readyz /metrics; 0 = off (8080)"),
    "--health-host": ("health_host", str, "address the health server binds (0.0.0.0)"),
    "--config": ("config_file", str, "local mode: JSON/YAML file with a list of integrations"),
    "--sink": ("sink", str, "local mode: append events as JSON lines to this file (default stdout)"),
    "--state-dir": ("state_dir", str, "directory for the SQLite spool and watch state (off)"),
    "--watch-timeout": ("watch_timeout", float, "upper bound of a watch request's timeoutSeconds (300)"),
    "--stall-margin": ("stall_margin", float, "silence beyond the watch timeout that counts as a stall (30)"),
    "--senders": ("senders", int, "concurrent event posts (8)"),
    "--max-attempts": ("max_attempts", int, "post attempts before an event is dead-lettered (8)"),
    "--max-event-age": ("max_event_age", float, "seconds an event may wait for delivery (3600)"),
    "--drain-timeout": ("drain_timeout", float, "seconds to drain delivery on stop (10)"),
    "--outbox-max": ("outbox_max", int, "events kept in memory for delivery (50000)"),
    "--event-repeat-window": ("event_repeat_window", float, "seconds within which repeats of one k8s Event are coalesced (300)"),
    "--rollout-window": ("rollout_window", float, "seconds after a rollout within which a pod failure names it (900)"),
}


def build_parser() -> argparse.ArgumentParser:
    env_lines = "\n".join(f"  {var:<24} --{field.replace('_', '-')}" for var, field in ENV_VARS.items())
    parser = argparse.ArgumentParser(
        prog="painchain-connector",
        description=(
            "PainChain Kubernetes connector: watches clusters and posts significant changes.\n\n"
            "Backend mode (BACKEND_API_URL or --backend): registers with PainChain, reads its\n"
            "integrations every RESYNC_INTERVAL, posts events. Local mode (default): integrations\n"
            "from --config FILE or the current kubeconfig context; events as JSON lines to stdout."
        ),
        epilog="Environment variables (flags win):\n" + env_lines,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backend", nargs="?", const=DEFAULT_BACKEND_URL, default=None, metavar="URL",
        help=f"backend mode: PainChain API base URL, ending in /api (default when given bare: {DEFAULT_BACKEND_URL})",
    )
    parser.add_argument("--local", action="store_true", help="force local mode even if BACKEND_API_URL is set")
    parser.add_argument("--demo", action="store_true",
                        help="try it: start an embedded cluster, watch it, play a short story (DEMO_PACE seconds "
                             "between steps, default 3), print each event and a summary")
    parser.add_argument("--keep", action="store_true",
                        help="with --demo: keep the cluster and the connector running after the story (prints a "
                             "KUBECONFIG for kubectl); Ctrl-C stops everything")
    for flag, (field, kind, text) in _FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, default=None, help=text)
    return parser


def parse_settings(argv: list[str], environ=None) -> Settings:
    return settings_from(build_parser().parse_args(argv), environ)


def settings_from(args: argparse.Namespace, environ=None) -> Settings:
    overrides = {field: getattr(args, field) for field, _, _ in _FLAGS.values()}
    overrides["backend_url"] = args.backend
    settings = load_settings(environ=environ, overrides=overrides)
    if args.local:
        settings = settings.replace(backend_url=None)
    return settings


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.keep and not args.demo:
        parser.error("--keep goes with --demo")
    if args.demo:
        from .demo.entry import run_demo

        return run_demo(args)
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"painchain-connector: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    from .running import Connector
    from .sources import NoClusterConfigured

    try:
        connector = Connector(settings)
    except SettingsError as exc:  # e.g. SHARD_KUBECONFIG unusable
        logger.error(str(exc))
        return 2
    if settings.local_mode:
        try:
            connector.source.fetch()
        except NoClusterConfigured as exc:
            logger.error(str(exc))
            return 2
    stop_requested = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop_requested.set)
    mode = f"backend {settings.backend_url}" if settings.backend_url else "local mode"
    logger.info("starting ({})", mode)
    connector.start()
    gevent.wait([stop_requested, connector.failed], count=1)
    if connector.fatal_error:
        connector.stop(timeout=0)
        return 1
    logger.info("stopping: draining delivery for up to {}s", settings.drain_timeout)
    connector.stop()
    return 0
