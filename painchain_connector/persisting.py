"""The persisted watch state format: one watch's Store as bytes, and back.

Format 2 (written now):

    b"painchain-watch-state\\n" + JSON header + b"\\n" + pickle of {uid: compact}

The header says `{"format": 2, "types": {"module.Class": [field names], ...}}` for every
compact class in the payload. Reading maps each stored class onto the current one by
field NAME: a field the current class added with a default is filled in, a field it
dropped is ignored; a class that is gone, or a new field without a default, makes the
whole state unusable, and the caller starts from a baseline. So a detection change never
turns a restart into a crash or, worse, into fields read in the wrong places.

Format 1 (the bare pickle of earlier versions) is read when every object unpickles into a
current class of the same arity, and discarded otherwise.

Unpickling is restricted to the compact classes of `painchain_connector.detecting` and
datetime values: a state file cannot name any other callable. No I/O, no greenlets; how
it fails: `decode` returns None (with the reason in `Unusable`) instead of raising.
"""
from __future__ import annotations

import datetime
import functools
import io
import pickle
import sys
from typing import Any

import orjson

MAGIC = b"painchain-watch-state\n"
FORMAT = 2
_ALLOWED_BUILTINS = {("datetime", "datetime"), ("datetime", "timezone"), ("datetime", "timedelta"),
                     ("datetime", "date")}


class Unusable(ValueError):
    """A persisted state that this connector cannot read; the reason is safe to log."""


@functools.cache
def compact_classes() -> dict[str, type]:
    """Every compact class (detecting.common.Compact) defined in the detection modules, by
    'module.Class' (found once: the modules do not change while the process runs)."""
    from . import detecting  # noqa: F401 - imports every detection module
    from .detecting.common import Compact

    found: dict[str, type] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("painchain_connector.detecting") or module is None:
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Compact) and value is not Compact \
                    and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    return found


@functools.cache
def _header() -> bytes:
    types = {name: list(cls._fields) for name, cls in compact_classes().items()}
    return MAGIC + orjson.dumps({"format": FORMAT, "types": types}) + b"\n"


def encode(objects: dict[str, Any]) -> bytes:
    """Format 2 bytes of one Store's objects."""
    return _header() + pickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)


def decode(blob: bytes) -> dict[str, Any]:
    """The objects of a persisted Store, in the current compact classes. Raises Unusable."""
    classes = compact_classes()
    if blob.startswith(MAGIC):
        head, _, payload = blob[len(MAGIC):].partition(b"\n")
        try:
            header = orjson.loads(head)
        except ValueError:
            raise Unusable("unreadable header") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise Unusable(f"format {header.get('format') if isinstance(header, dict) else '?'} is not {FORMAT}")
        stored = header.get("types") or {}
    elif blob[:1] == b"\x80":  # format 1: a bare pickle, written with the classes of its day
        payload, stored = blob, {name: list(cls._fields) for name, cls in classes.items()}
    else:
        raise Unusable("not a watch state")
    try:
        objects = _Unpickler(io.BytesIO(payload), classes=classes, stored=stored).load()
    except Unusable:
        raise
    except Exception as exc:  # noqa: BLE001 - any corruption means "unusable", never a crash
        raise Unusable(f"{type(exc).__name__} while reading") from None
    if not isinstance(objects, dict):
        raise Unusable("not a map of objects")
    return objects


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, *, classes: dict[str, type], stored: dict[str, list]) -> None:
        super().__init__(file)
        self._classes, self._stored = classes, stored

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_BUILTINS:
            return getattr(datetime, name)
        qualified = f"{module}.{name}"
        current = self._classes.get(qualified)
        fields = self._stored.get(qualified)
        if current is None or fields is None:
            raise Unusable(f"unknown class {qualified}")
        # Always through the stand-in, even when the fields match: a compact written while
        # compacts were NamedTuples is rebuilt by cls.__new__(cls, *values), which a
        # msgspec Struct does not take.
        return _by_name(current, tuple(fields))


@functools.lru_cache(maxsize=64)
def _by_name(current: type, stored_fields: tuple[str, ...]) -> type:
    """A stand-in class whose construction builds `current` from values in stored order."""
    defaults = current._field_defaults
    stored_fields = list(stored_fields)
    missing = [f for f in current._fields if f not in stored_fields and f not in defaults]
    if missing:
        raise Unusable(f"{current.__name__} needs {', '.join(missing)}, which the state lacks")
    wanted = set(current._fields)

    class Renamed:
        def __new__(cls, *values):
            if len(values) != len(stored_fields):
                raise Unusable(f"{current.__name__}: {len(values)} values for {len(stored_fields)} fields")
            return current(**{f: v for f, v in zip(stored_fields, values) if f in wanted})

    return Renamed
