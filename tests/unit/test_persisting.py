"""The persisted watch state format: read by a newer connector, or discarded cleanly."""
import pickle

import orjson
import pytest

from painchain_connector import persisting
from painchain_connector.detecting import project

DEPLOYMENT = {"metadata": {"uid": "u-1", "name": "web", "namespace": "ns", "resourceVersion": "7",
                           "creationTimestamp": "2024-05-01T09:00:00Z", "generation": 2},
              "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "web:1"}]}}}}
POD = {"metadata": {"uid": "u-2", "name": "p", "namespace": "ns", "resourceVersion": "8"},
       "spec": {"containers": [{"name": "c", "image": "web:1"}]}, "status": {"phase": "Running"}}


def objects() -> dict:
    deployment, pod = project("deployments", DEPLOYMENT), project("pods", POD)
    return {deployment.uid: deployment, pod.uid: pod}


def _qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_state_round_trips_through_the_current_format():
    blob = persisting.encode(objects())
    assert blob.startswith(persisting.MAGIC)
    assert persisting.decode(blob) == objects()


def test_state_written_by_the_previous_format_version_is_read():
    version_1 = pickle.dumps(objects(), protocol=pickle.HIGHEST_PROTOCOL)  # what earlier connectors wrote
    assert persisting.decode(version_1) == objects()


def test_a_compact_class_that_gained_a_defaulted_field_and_lost_another_is_read_by_field_name():
    compact = project("deployments", DEPLOYMENT)
    cls = type(compact)
    added = next(f for f in reversed(cls._fields) if f in cls._field_defaults)  # "new" field, with a default
    old_fields = [f for f in cls._fields if f != added] + ["legacy_field"]
    old_values = tuple(getattr(compact, f) for f in cls._fields if f != added) + ("gone",)

    class OldShape(tuple):  # pickles as the class name with the values in the old order
        def __reduce__(self):
            return cls, tuple(self)

    header = {"format": 2, "types": {_qualified(cls): old_fields}}
    blob = persisting.MAGIC + orjson.dumps(header) + b"\n" + pickle.dumps({"u-1": OldShape(old_values)})
    restored = persisting.decode(blob)["u-1"]
    assert type(restored) is cls
    assert restored == compact._replace(**{added: cls._field_defaults[added]})


def test_a_compact_class_that_gained_a_required_field_makes_the_state_unusable():
    compact = project("pods", POD)
    cls = type(compact)
    required = next(f for f in cls._fields if f not in cls._field_defaults and f != "uid")
    blob = persisting.encode({"u-2": compact})
    head, _, payload = blob[len(persisting.MAGIC):].partition(b"\n")
    header = orjson.loads(head)
    header["types"][_qualified(cls)] = [f for f in cls._fields if f != required]
    with pytest.raises(persisting.Unusable, match=required):
        persisting.decode(persisting.MAGIC + orjson.dumps(header) + b"\n" + payload)


@pytest.mark.parametrize("blob", [
    persisting.MAGIC + b'{"format": 3, "types": {}}\n' + pickle.dumps({}),  # a newer format
    b"\x80" + b"garbage",  # a truncated pickle
    b"not a state at all",
    pickle.dumps({"u": print}),  # a callable that is not a compact class
])
def test_unreadable_or_unknown_states_are_unusable_not_a_crash(blob):
    with pytest.raises(persisting.Unusable):
        persisting.decode(blob)


def test_state_written_while_compacts_were_named_tuples_is_read(monkeypatch):
    """Connectors before msgspec compacts pickled NamedTuples: an upgrade keeps their state."""
    from typing import NamedTuple

    from painchain_connector.detecting import pods

    current = objects()

    def named_tuple_twin(cls):
        twin = NamedTuple(cls.__name__, [(f, object) for f in cls._fields])
        twin.__module__, twin.__qualname__ = cls.__module__, cls.__qualname__
        return twin

    old_pod, old_container = named_tuple_twin(pods.PodCompact), named_tuple_twin(pods.Container)

    def as_old(pod):
        containers = tuple(old_container(*(getattr(c, f) for f in pods.Container._fields)) for c in pod.containers)
        return old_pod(*(containers if f == "containers" else getattr(pod, f) for f in pods.PodCompact._fields))

    pod = next(c for c in current.values() if isinstance(c, pods.PodCompact))
    monkeypatch.setattr(pods, "PodCompact", old_pod)  # pickle finds the class by its module and name
    monkeypatch.setattr(pods, "Container", old_container)
    blob = persisting.encode({pod.uid: as_old(pod)})
    monkeypatch.undo()
    assert persisting.decode(blob) == {pod.uid: pod}
