"""Log output and redaction: the one place that decides what reaches a log line.

`configure_logging` is for the host process only (the CLI entry point, or an embedding
application that wants our format): it replaces loguru's handlers with one sink, enables
the "painchain_connector" logger and, unless told otherwise, routes the other ways text
reaches stderr through that sink too (stdlib `logging` of urllib3/kubernetes/requests,
`warnings`, and tracebacks the gevent hub prints for greenlets that die). Importing
this module does none of that.

Redaction is applied by the sink to every record, after formatting, over the message,
the bound context and the traceback text (which this module formats itself, with
loguru's `backtrace`/`diagnose` off so local variable values never appear). Two layers:

- known secrets (secret_registry.py): `set_secrets(owner, ...)` (every cluster token and certificate of one
  integration; a base64 PEM bundle also registers its decoded body lines), found by plain
  substring search, or through an index of their tails once there are many of them.
  Tenants write these strings, so the registry refuses what could blank ordinary text out
  of the operator's log: anything under 16 characters, anything with whitespace, anything
  found inside an integration's id, tenant id or name; and an owner's secrets leave when
  the owner leaves (`retain_secrets`) or rotates them.
- patterns, for secrets nobody registered: Authorization headers and `Bearer ...`,
  `token=...`, quoted `'token': '...'`-style keys in dict reprs and JSON, JWTs, PEM
  blocks, and base64 runs that decode to PEM / DER.

`redact(text)` is public: error messages built from exceptions pass through it before
they are raised or stored. How it fails: the sink never raises (a record it cannot
format becomes a one-line, still redacted, notice) because loguru's own error report
would print the raw record. No greenlets.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sys
import traceback
from datetime import timezone
from typing import Any, TextIO

from ._log import logger
from .secret_registry import (  # noqa: F401 - re-exported: the log layer's public names
    MIN_SECRET_LENGTH,
    REDACTED,
    SecretRegistry,
    _registry,
    register_secrets,
    retain_secrets,
    set_secrets,
)

CONTEXT_KEYS = ("integration", "cluster", "resource", "namespace")
PACKAGE = "painchain_connector"

# ---------------------------------------------------------------------------------------
# Patterns for secrets nobody registered

_B64_RUN_MIN = 40
_SECRET_KEYS = (
    r"[A-Za-z_-]*token|[A-Za-z_-]*password|[A-Za-z_-]*secret|certificate|api[_-]?key"
    r"|client-key-data|client-certificate-data|certificate-authority-data"
)


def _looks_like_pem_or_der(match: re.Match[str]) -> str:
    run = match.group(0)
    if run.startswith("MII"):  # base64 of a DER SEQUENCE with a long length: a certificate or key
        return REDACTED
    try:
        decoded = base64.b64decode(run + "=" * (-len(run) % 4))
    except (binascii.Error, ValueError):
        return run
    return REDACTED if b"-----BEGIN" in decoded or b"PRIVATE KEY" in decoded else run


# (guards, regex, replacement), applied in order. A rule runs only when one of its guards
# occurs in the lowercased text: one regex per rule with a cheap `in` check in front is
# several times faster than one combined alternation, which defeats re's prefix search.
# For the same reason patterns start with a literal or a character class, not `(?i)`.
_RULES: list[tuple[tuple[str, ...], re.Pattern[str], Any]] = [
    (("-----begin",), re.compile(r"-----BEGIN [A-Z0-9 ]+-----(?s:.*?)(?:-----END [A-Z0-9 ]+-----|\Z)"), REDACTED),
    (("ls0tls1crudjti",), re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/]*={0,2}"), REDACTED),  # base64 of "-----BEGIN"
    (("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),  # JWT
    # 'Authorization': 'Bearer x' / Authorization: Bearer x / "authorization"="Basic x"
    (
        ("authorization",),
        re.compile(r"(?P<key>[Aa](?i:uthorization)['\"]?\s*[:=]\s*['\"]?(?:[A-Za-z-]+\s+)?)[^\s'\",}]+"),
        rf"\g<key>{REDACTED}",
    ),
    # 'token': 'x' / "client-key-data": "x" (dict reprs, JSON documents)
    (
        ("token", "password", "secret", "certificate", "key"),
        re.compile(rf"(?P<key>(?P<q1>['\"])(?i:{_SECRET_KEYS})(?P=q1)\s*:\s*(?P<q2>['\"]))[^'\"]*(?P=q2)"),
        rf"\g<key>{REDACTED}\g<q2>",
    ),
    # token=x / access_token='x' (query strings, keyword reprs)
    (
        ("token=", "password=", "secret="),
        re.compile(r"(?P<key>(?:[Tt](?i:oken)|[Pp](?i:assword)|[Ss](?i:ecret))=['\"]?)[^&\s'\",;)}\]]+"),
        rf"\g<key>{REDACTED}",
    ),
    (("bearer",), re.compile(r"(?P<key>\b[Bb](?i:earer)\s+)(?!token\b)[A-Za-z0-9\-._~+/]+=*"), rf"\g<key>{REDACTED}"),
    # https://user:password@host (credentials in a URL, e.g. BACKEND_API_URL)
    (("://",), re.compile(r"(?P<key>\b[a-z][a-z0-9+.-]*://)[^/\s:@'\"]+:[^/\s@'\"]*@"), rf"\g<key>{REDACTED}@"),
    # Long base64 runs: redacted when they are a PEM or DER in disguise, kept otherwise.
    ((), re.compile(rf"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{{{_B64_RUN_MIN},}}={{0,2}}"), _looks_like_pem_or_der),
]


def redact(text: str) -> str:
    """`text` with every registered secret and every secret-looking pattern replaced."""
    if not text:
        return text
    text = _registry.redact(text)
    lowered = text.lower()
    for guards, regex, replacement in _RULES:
        if not guards or any(guard in lowered for guard in guards):
            text = regex.sub(replacement, text)
    return text


# ---------------------------------------------------------------------------------------
# Formatting


def _time(record: dict) -> str:
    return record["time"].astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exception_text(record: dict) -> str:
    exc = record["exception"]
    if exc is None or exc.type is None:
        return ""
    return "".join(traceback.format_exception(exc.type, exc.value, exc.traceback)).rstrip("\n")


def _context(record: dict) -> dict[str, str]:
    extra = record["extra"]
    return {key: str(extra[key]) for key in CONTEXT_KEYS if extra.get(key) is not None}


def format_json(record: dict) -> str:
    """One JSON object, one line: time, level, message, logger, context keys, exception."""
    doc: dict[str, Any] = {
        "time": _time(record),
        "level": record["level"].name,
        "message": redact(record["message"]),
        "logger": record["name"],
    }
    for key, value in _context(record).items():
        doc[key] = redact(value)
    exception = _exception_text(record)
    if exception:
        doc["exception"] = redact(exception)
    return json.dumps(doc, ensure_ascii=False, default=str) + "\n"


def format_text(record: dict) -> str:
    """`time LEVEL logger: message  key=value ...`, then the traceback, if any."""
    context = " ".join(f"{key}={redact(value)}" for key, value in _context(record).items())
    line = f"{_time(record)} {record['level'].name:<8} {record['name']}: {redact(record['message'])}"
    if context:
        line = f"{line}  [{context}]"
    exception = _exception_text(record)
    if exception:
        line = f"{line}\n{redact(exception)}"
    return line + "\n"


_FORMATTERS = {"json": format_json, "text": format_text}


class _Sink:
    """Formats, redacts and writes each record; never raises (see the module docstring)."""

    def __init__(self, stream: TextIO, formatter) -> None:
        self._write = stream.write
        self._flush = getattr(stream, "flush", None)
        self._format = formatter

    def __call__(self, message) -> None:
        record = message.record
        try:
            line = self._format(record)
        except Exception as exc:  # noqa: BLE001 - a broken __str__ in a bound value, a recursion, ...
            line = redact(f"{_time(record)} ERROR could not format a log record: {type(exc).__name__}: {exc}") + "\n"
        try:
            self._write(line)
            if self._flush is not None:
                self._flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone: nowhere left to report it


# ---------------------------------------------------------------------------------------
# Other sources of stderr text


class _InterceptHandler(logging.Handler):
    """stdlib logging (urllib3, kubernetes, requests) -> loguru, so it is redacted too."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        try:
            text = record.getMessage()
        except Exception as exc:  # noqa: BLE001 - bad %-args in a library's log call
            text = f"{record.msg!r} (unformattable arguments: {type(exc).__name__})"
        # The record is named for the stdlib logger ("urllib3.connectionpool"), not for
        # whoever happened to call it.
        where = {"name": record.name, "function": record.funcName, "line": record.lineno}
        logger.patch(lambda r: r.update(where)).opt(exception=record.exc_info).log(level, "{}", text)

    def handleError(self, record: logging.LogRecord) -> None:
        # The default prints the record, arguments and all, to stderr unredacted.
        logger.error("a stdlib log record from {} could not be handled", record.name)


def _print_hub_exception(context: Any, t: type, v: BaseException, tb) -> None:
    """Replaces gevent's Hub.print_exception, which writes raw tracebacks to stderr."""
    try:
        where = context if isinstance(context, str) else repr(context)
    except Exception:  # noqa: BLE001 - a broken __repr__
        where = object.__repr__(context)
    logger.opt(exception=(t, v, tb)).error("unhandled error in {}", where)


class _State:
    intercept: _InterceptHandler | None = None
    hub: Any = None
    root_level: int | None = None


def _capture_foreign(level_no: int) -> None:
    root = logging.getLogger()
    if _State.intercept is None:
        _State.intercept = _InterceptHandler()
        _State.root_level = root.level
        root.addHandler(_State.intercept)
    root.setLevel(max(level_no, logging.DEBUG))
    logging.captureWarnings(True)
    # Only the gevent hub of this thread: the one the connector runs on.
    import gevent

    _State.hub = gevent.get_hub()
    _State.hub.print_exception = _print_hub_exception


def _release_foreign() -> None:
    root = logging.getLogger()
    if _State.intercept is not None:
        root.removeHandler(_State.intercept)
        root.setLevel(_State.root_level if _State.root_level is not None else logging.WARNING)
        _State.intercept = None
        logging.captureWarnings(False)
    if _State.hub is not None:
        _State.hub.__dict__.pop("print_exception", None)
        _State.hub = None


def configure_logging(*, level: str, fmt: str, sink: TextIO | None = None, capture_foreign: bool = True) -> None:
    """Host only: one redacting sink for everything; idempotent (replaces, never adds).

    fmt is "text" or "json"; sink is any object with write() (flush() if it has one),
    sys.stderr by default.
    capture_foreign routes stdlib logging, warnings and gevent hub tracebacks through the
    same sink; an embedding host that owns those can pass False.
    """
    if fmt not in _FORMATTERS:
        raise ValueError(f"log format must be one of {sorted(_FORMATTERS)}, not {fmt!r}")
    level = level.upper()
    level_no = logger.level(level).no  # raises ValueError for an unknown level
    logger.remove()
    logger.add(
        _Sink(sys.stderr if sink is None else sink, _FORMATTERS[fmt]),
        level=level,
        format="{message}",  # unused: the sink formats from the record
        colorize=False,
        backtrace=False,
        diagnose=False,
        catch=False,  # loguru's report of a failing sink prints the raw record
    )
    logger.enable(PACKAGE)
    if capture_foreign:
        _capture_foreign(level_no)
    else:
        _release_foreign()


def reset_logging() -> None:
    """Undo configure_logging: no sinks, stdlib/gevent untouched, package logger disabled."""
    _release_foreign()
    logger.remove()
    logger.disable(PACKAGE)
