"""#1c: the cost of turning one detected change into the bytes that are posted.

Per event, on real detected changes of the generated pod stream (bench.delivery's sample):
- msgspec: `to_outgoing` as the connector runs it (an `OutgoingEvent` Struct encoded once;
  the backend, the spool and the sink use those bytes as they are);
- marshmallow: the previous path, `PainChainEventSchema.dump` (one schema instance, as it
  was) plus the `json.dumps` the backend client then did at every post;
- marshmallow dump alone: what the previous `to_outgoing` cost on the watch greenlet.
Best of `rounds`, microseconds per event, in this process (no I/O).
"""
from __future__ import annotations

import json
import time

from painchain_connector.model import Route
from painchain_connector.schemas.event import schema_document, to_outgoing


def _us_per_event(fn, changes, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn(changes)
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / len(changes)


def bench_outgoing(*, changes=None, rounds: int = 5, repeat: int = 10) -> dict:
    if changes is None:
        from bench.delivery import sample_changes

        changes = sample_changes()
    changes = list(changes) * repeat
    route = Route(integration_id="cm3x9k2l0000", tenant_id="tenant-1", cluster="prod-eu", tags=("production",))

    def msgspec_path(found):
        for change in found:
            to_outgoing(change, route)

    def marshmallow_path(found):
        for change in found:
            json.dumps(schema_document(change, route))

    def marshmallow_dump(found):
        for change in found:
            schema_document(change, route)

    msgspec_path(changes[:50])  # warm-up: the encoder and the schema are made on first use
    marshmallow_path(changes[:50])
    result = {
        "events": len(changes),
        "msgspec_us": _us_per_event(msgspec_path, changes, rounds),
        "marshmallow_json_us": _us_per_event(marshmallow_path, changes, rounds),
        "marshmallow_dump_us": _us_per_event(marshmallow_dump, changes, rounds),
        "payload_bytes": round(sum(len(to_outgoing(c, route).payload) for c in changes) / len(changes)),
        "json_dumps_bytes": round(sum(len(json.dumps(schema_document(c, route))) for c in changes) / len(changes)),
    }
    result["speedup"] = result["marshmallow_json_us"] / result["msgspec_us"]
    return result


if __name__ == "__main__":
    import sys

    sys.path.insert(0, ".")
    print(json.dumps(bench_outgoing(), indent=2))
