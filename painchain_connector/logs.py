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

- known secrets: `register_secrets` (every cluster token and certificate the connector
  parses; a base64 PEM bundle also registers its decoded body lines). One regex, built
  from a trie of the escaped secrets and rebuilt lazily when the set changed.
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
import os
import re
import sys
import threading
import traceback
from datetime import timezone
from typing import Any, Iterable, TextIO

from loguru import logger

REDACTED = "[REDACTED]"
# Shorter strings are not registered: redacting every "admin" or "test" in every line
# would make logs unreadable, and credentials that short are not worth hiding anyway.
MIN_SECRET_LENGTH = 8
CONTEXT_KEYS = ("integration", "cluster", "resource", "namespace")
PACKAGE = "painchain_connector"

# ---------------------------------------------------------------------------------------
# Known secrets


def _trie_pattern(words: list[str]) -> str:
    """A regex matching any of `words`, shaped as a radix trie (one branch per character).

    A flat `a|b|c|...` makes `re` try every alternative at every position of the line;
    the trie tries one per distinct next character, so the cost barely grows with the
    number of secrets.
    """
    words = sorted(set(words))
    prefix = os.path.commonprefix(words)
    head = re.escape(prefix)
    rest = [w[len(prefix):] for w in words]
    optional = "" in rest
    rest = [w for w in rest if w]
    if not rest:
        return head
    groups: dict[str, list[str]] = {}
    for word in rest:
        groups.setdefault(word[0], []).append(word)
    branches = [_trie_pattern(group) for group in groups.values()]
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if optional:
        # Prefer the longer secret: greedy `?` tries the branch first.
        body = "(?:" + body + ")?" if len(branches) == 1 else body + "?"
    return head + body


class SecretRegistry:
    """The set of known secrets and the compiled regex that finds them."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._regex: re.Pattern[str] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._secrets)

    def register(self, values: Iterable[str | None]) -> None:
        new: set[str] = set()
        for value in values:
            if value:
                new.update(_expand_secret(value))
        new = {s for s in new if len(s) >= MIN_SECRET_LENGTH} - self._secrets
        if not new:
            return
        with self._lock:
            self._secrets |= new
            self._dirty = True

    def clear(self) -> None:
        with self._lock:
            self._secrets = set()
            self._regex = None
            self._dirty = False

    def regex(self) -> re.Pattern[str] | None:
        # Rebuilt on first use after a change, so registering a whole re-sync's worth of
        # clusters one by one costs one rebuild, not one per cluster.
        if self._dirty:
            with self._lock:
                if self._dirty:
                    self._regex = re.compile(_trie_pattern(list(self._secrets))) if self._secrets else None
                    self._dirty = False
        return self._regex


def _expand_secret(value: str) -> list[str]:
    """The secret itself plus, for a PEM or base64-of-PEM, each body line of the PEM."""
    value = value.strip()
    out = [value]
    pem = value if "-----BEGIN" in value else None
    if pem is None and len(value) >= 40:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if b"-----BEGIN" in decoded:
            pem = decoded.decode("ascii", "replace")
    if pem is not None:
        out.extend(line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----"))
    return out


_registry = SecretRegistry()


def register_secrets(values: Iterable[str | None]) -> None:
    """Never log these strings (tokens, certificates). None and empty values are skipped.

    A certificate (PEM, or base64 of PEM as in the integration config) also registers
    the base64 lines of its body, so a PEM printed by a TLS library is caught too.
    Strings shorter than MIN_SECRET_LENGTH are ignored; the set only grows (a rotated
    token stays a secret).
    """
    _registry.register(values)


# ---------------------------------------------------------------------------------------
# Patterns for secrets nobody registered

_B64_RUN_MIN = 40
_SECRET_KEYS = (
    r"[A-Za-z_-]*token|[A-Za-z_-]*password|[A-Za-z_-]*secret|certificate|api[_-]?key"
    r"|client-key-data|client-certificate-data|certificate-authority-data"
)
_PATTERNS = [
    ("pem", r"-----BEGIN [A-Z0-9 ]+-----(?s:.*?)(?:-----END [A-Z0-9 ]+-----|\Z)"),
    # 'Authorization': 'Bearer x' / Authorization: Bearer x / "authorization"="Basic x"
    ("header", r"(?i:(?P<header_key>\b(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?(?:[a-z-]+\s+)?))[^\s'\",}]+"),
    # 'token': 'x' / "client-key-data": "x" (dict reprs, JSON documents)
    ("quoted", rf"(?P<quoted_key>(?P<q1>['\"])(?i:{_SECRET_KEYS})(?P=q1)\s*:\s*(?P<q2>['\"]))[^'\"]*(?P=q2)"),
    # token=x / access_token='x' (query strings, keyword reprs)
    ("assign", r"(?i:(?P<assign_key>\b[a-z_]*(?:token|password|secret)=['\"]?))[^&\s'\",;)}\]]+"),
    ("bearer", r"(?i:(?P<bearer_key>\bbearer\s+))(?!token\b)[A-Za-z0-9\-._~+/]+=*"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    ("b64pem", r"LS0tLS1CRUdJTi[A-Za-z0-9+/]*={0,2}"),
    ("b64", rf"[A-Za-z0-9+/]{{{_B64_RUN_MIN},}}={{0,2}}"),
]
_PATTERN_RE = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _PATTERNS))


def _looks_like_pem_or_der(run: str) -> bool:
    if run.startswith("MII"):  # base64 of a DER SEQUENCE with a long length: a certificate or key
        return True
    try:
        decoded = base64.b64decode(run + "=" * (-len(run) % 4))
    except (binascii.Error, ValueError):
        return False
    return b"-----BEGIN" in decoded or b"PRIVATE KEY" in decoded


def _replace_pattern(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "b64":
        run = match.group(0)
        return REDACTED if _looks_like_pem_or_der(run) else run
    if kind == "quoted":
        return match.group("quoted_key") + REDACTED + match.group("q2")
    if kind in ("header", "assign", "bearer"):
        return match.group(f"{kind}_key") + REDACTED
    return REDACTED


def redact(text: str) -> str:
    """`text` with every registered secret and every secret-looking pattern replaced."""
    if not text:
        return text
    known = _registry.regex()
    if known is not None:
        text = known.sub(REDACTED, text)
    return _PATTERN_RE.sub(_replace_pattern, text)


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
        self._stream = stream
        self._format = formatter

    def __call__(self, message) -> None:
        record = message.record
        try:
            line = self._format(record)
        except Exception as exc:  # a broken __str__ in a bound value, a recursion, ...
            line = redact(f"{_time(record)} ERROR could not format a log record: {type(exc).__name__}: {exc}") + "\n"
        try:
            self._stream.write(line)
            self._stream.flush()
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
        except Exception as exc:  # bad %-args in a library's log call
            text = f"{record.msg!r} (unformattable arguments: {type(exc).__name__})"
        # depth: find the caller outside `logging` so the record names the library module.
        frame, depth = logging.currentframe(), 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, "{}", text)

    def handleError(self, record: logging.LogRecord) -> None:
        # The default prints the record, arguments and all, to stderr unredacted.
        logger.error("a stdlib log record from {} could not be handled", record.name)


def _print_hub_exception(context: Any, t: type, v: BaseException, tb) -> None:
    """Replaces gevent's Hub.print_exception, which writes raw tracebacks to stderr."""
    try:
        where = context if isinstance(context, str) else repr(context)
    except Exception:
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


def configure_logging(*, level: str, fmt: str, sink: TextIO = sys.stderr, capture_foreign: bool = True) -> None:
    """Host only: one redacting sink for everything; idempotent (replaces, never adds).

    fmt is "text" or "json"; sink is any object with write() (flush() if it has one).
    capture_foreign routes stdlib logging, warnings and gevent hub tracebacks through the
    same sink; an embedding host that owns those can pass False.
    """
    if fmt not in _FORMATTERS:
        raise ValueError(f"log format must be one of {sorted(_FORMATTERS)}, not {fmt!r}")
    level = level.upper()
    level_no = logger.level(level).no  # raises ValueError for an unknown level
    logger.remove()
    logger.add(
        _Sink(sink, _FORMATTERS[fmt]),
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
