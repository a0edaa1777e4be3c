"""The shapes of what an apiserver sends, as msgspec Structs: only the fields detection,
correlation, the filters and the event data read. Everything else in an object (a pod's
env, probes, resources, managedFields; ~2.4 KB of a ~35-field pod) is skipped by the
decoder in C and never becomes a Python object.

A watch line decodes straight into `WatchEvent[Pod]` (or the kind's shape), a list page
into `ListPage[Pod]`; `detecting.project` then keeps the compact state of each object. A
field a shape declares must have the declared type (`restartCount` an integer, `labels` a
map of strings): a value of another type is the clear `Malformed` error the watch reports
(see clusters.py), as a line that is not JSON at all. JSON `null` is accepted wherever
Kubernetes may send it (omitted and null mean the same to every reader here: a container
`state: {"waiting": null}`, which no apiserver sends, reads as no state).

The Structs are `gc=False`: decoded JSON cannot hold a reference cycle, and untracked
objects cost the collector nothing. Field names are the Python spelling of the API's
camelCase (`rename="camel"`); the few that camelCase cannot spell (clusterIP) say so.
No I/O, no state: `decoder(...)` builds the cached msgspec decoders on first use.
"""
from __future__ import annotations

import functools
from typing import Annotated, Any, Callable, Generic, TypeVar

import msgspec
from msgspec import Struct, field

T = TypeVar("T")
# Kubernetes integers are int32/int64: a larger number is an answer no apiserver sends (and
# one orjson could not encode again in the event data), so it does not fit the shape.
Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Shape(Struct, rename="camel", gc=False):
    """Base of every decoded shape: camelCase on the wire, snake_case attributes."""


# ---------------------------------------------------------------- metadata


class OwnerReference(_Shape):
    kind: str | None = None
    name: str | None = None
    controller: bool | None = None


class ManagedFields(_Shape):
    manager: str | None = None
    time: str | None = None
    subresource: str | None = None
    fields_v1: dict[str, Any] | None = field(default=None, name="fieldsV1")


class ObjectMeta(_Shape):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: Int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None


class ManagedMeta(ObjectMeta):
    """Metadata with its field managers: workloads and Services (who changed it)."""

    managed_fields: list[ManagedFields] | None = None


# ---------------------------------------------------------------- pods


class ContainerSpec(_Shape):
    name: str | None = None
    image: str | None = None


class PodSpec(_Shape):
    node_name: str | None = None
    containers: list[ContainerSpec] | None = None
    init_containers: list[ContainerSpec] | None = None


class PodCondition(_Shape):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    last_transition_time: str | None = None


class Terminated(_Shape):
    exit_code: Int | None = None
    signal: Int | None = None
    reason: str | None = None
    message: str | None = None
    finished_at: str | None = None
    container_id: str | None = field(default=None, name="containerID")


class Waiting(_Shape):
    reason: str | None = None
    message: str | None = None


class Running(_Shape):
    """Only its presence matters (startedAt is not read)."""


class ContainerState(_Shape):
    waiting: Waiting | None = None
    running: Running | None = None
    terminated: Terminated | None = None


class ContainerStatus(_Shape):
    name: str | None = None
    ready: bool | None = None
    restart_count: Int | None = None
    state: ContainerState | None = None
    last_state: ContainerState | None = None


class PodStatus(_Shape):
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    start_time: str | None = None
    conditions: list[PodCondition] | None = None
    container_statuses: list[ContainerStatus] | None = None
    init_container_statuses: list[ContainerStatus] | None = None


class Pod(_Shape):
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    spec: PodSpec = field(default_factory=PodSpec)
    status: PodStatus = field(default_factory=PodStatus)


# ---------------------------------------------------------------- workloads


class WorkloadCondition(_Shape):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    last_transition_time: str | None = None
    last_update_time: str | None = None


class WorkloadStatus(_Shape):
    """The status fields of Deployments, StatefulSets and DaemonSets together."""

    observed_generation: Int | None = None
    replicas: Int | None = None
    ready_replicas: Int | None = None
    available_replicas: Int | None = None
    updated_replicas: Int | None = None
    current_replicas: Int | None = None
    desired_number_scheduled: Int | None = None
    current_number_scheduled: Int | None = None
    number_ready: Int | None = None
    number_unavailable: Int | None = None
    update_revision: str | None = None
    current_revision: str | None = None
    conditions: list[WorkloadCondition] | None = None


class Workload(_Shape):
    """A Deployment, StatefulSet or DaemonSet. The spec stays a plain map: every field a
    person may edit is compared for Updated events (detecting/specdiff.py)."""

    metadata: ManagedMeta = field(default_factory=ManagedMeta)
    spec: dict[str, Any] | None = None
    status: WorkloadStatus = field(default_factory=WorkloadStatus)


# ---------------------------------------------------------------- services


class ServicePort(_Shape):
    name: str | None = None
    port: Int | None = None
    target_port: Int | str | None = None
    protocol: str | None = None
    node_port: Int | None = None


class ServiceSpec(_Shape):
    type: str | None = None
    cluster_ip: str | None = field(default=None, name="clusterIP")
    ports: list[ServicePort] | None = None


class Service(_Shape):
    metadata: ManagedMeta = field(default_factory=ManagedMeta)
    spec: ServiceSpec = field(default_factory=ServiceSpec)


# ---------------------------------------------------------------- core/v1 Events


class ObjectReference(_Shape):
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class EventSeries(_Shape):
    count: Int | None = None
    last_observed_time: str | None = None


class EventSource(_Shape):
    component: str | None = None


class Event(_Shape):
    metadata: ObjectMeta = field(default_factory=ObjectMeta)
    type: str | None = None
    reason: str | None = None
    message: str | None = None
    note: str | None = None  # events.k8s.io spelling of message
    count: Int | None = None
    series: EventSeries | None = None
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    event_time: str | None = None
    involved_object: ObjectReference | None = None
    regarding: ObjectReference | None = None  # events.k8s.io spelling of involvedObject
    source: EventSource | None = None
    reporting_component: str | None = None


# ---------------------------------------------------------------- the rest


class Owner(_Shape):
    """A ReplicaSet or Job, as the owner index reads it (correlating.py)."""

    metadata: ObjectMeta = field(default_factory=ObjectMeta)


class Status(_Shape):
    """The object of a watch ERROR event (a metav1.Status)."""

    code: int | str | None = None  # an int from a real apiserver; a string is read too (watching.py)
    reason: str | None = None
    message: str | None = None


class WatchEvent(_Shape, Generic[T]):
    type: str = ""
    object: T | None = None


class ListMeta(_Shape):
    resource_version: str | None = None
    continue_: str | None = field(default=None, name="continue")


class ListPage(_Shape, Generic[T]):
    metadata: ListMeta = field(default_factory=ListMeta)
    items: list[T] | None = None


class _Envelope(Struct):
    """A watch event whose object did not fit its shape: is it an ERROR (a Status)?"""

    type: str = ""
    object: msgspec.Raw = msgspec.Raw(b"null")


# Resource name -> shape of its objects. `dict` keeps every field (the namespace watch,
# the stall probe and tests read plain maps).
SHAPES: dict[str, type] = {
    "pods": Pod,
    "deployments": Workload,
    "statefulsets": Workload,
    "daemonsets": Workload,
    "services": Service,
    "events": Event,
    "replicasets": Owner,
    "jobs": Owner,
}


class Malformed(ValueError):
    """An answer that is not JSON (`not_json`), or whose object does not fit its shape.
    The message names the field path and the expected type, never a value."""

    def __init__(self, message: str, *, not_json: bool = False) -> None:
        super().__init__(message)
        self.not_json = not_json


@functools.cache
def _decoders(shape: type) -> tuple[msgspec.json.Decoder, msgspec.json.Decoder]:
    return msgspec.json.Decoder(WatchEvent[shape]), msgspec.json.Decoder(ListPage[shape])


_envelope = msgspec.json.Decoder(_Envelope)
_status = msgspec.json.Decoder(Status)


def event_decoder(shape: type = dict) -> Callable[[bytes], WatchEvent]:
    """The msgspec decode of WatchEvent[shape]: the hot path. It raises msgspec errors and
    may hand back an ERROR event with the wrong object; `decode_event` is the checked one."""
    return _decoders(shape)[0].decode


def decode_event(line: bytes, shape: type = dict) -> WatchEvent:
    """One watch line as a WatchEvent whose object has `shape`; an ERROR's is a Status
    (which may fit a shape too, its unknown fields skipped: the type decides)."""
    try:
        event = _decoders(shape)[0].decode(line)
    except msgspec.ValidationError as exc:
        failure = exc  # an ERROR event's Status does not fit a Pod (its `status` is a string)
    except msgspec.DecodeError:
        raise Malformed("a watch event that is not JSON", not_json=True) from None
    except RecursionError:
        raise Malformed("a watch event nested too deeply") from None
    else:
        return event if event.type != "ERROR" else (_error(line) or WatchEvent(type="ERROR", object=Status()))
    error = _error(line)
    if error is None:
        raise Malformed(f"a watch event does not fit the {shape.__name__} shape: {failure}") from None
    return error


def _error(line: bytes) -> WatchEvent | None:
    try:
        envelope = _envelope.decode(line)
        if envelope.type == "ERROR":
            return WatchEvent(type="ERROR", object=_status.decode(envelope.object))
    except (msgspec.MsgspecError, RecursionError):
        pass
    return None


def decode_list(body: bytes, shape: type = dict) -> ListPage:
    try:
        return _decoders(shape)[1].decode(body)
    except msgspec.ValidationError as exc:
        raise Malformed(f"a list answer does not fit the {shape.__name__} list shape: {exc}") from None
    except msgspec.DecodeError:
        raise Malformed("a list answer that is not JSON", not_json=True) from None
    except RecursionError:
        raise Malformed("a list answer nested too deeply") from None


def shaped(obj: Any, shape: type) -> Any:
    """`obj` as `shape`: a decoded Struct as it is, a plain map (tests, fixtures) converted."""
    if type(obj) is dict:
        return msgspec.convert(obj, shape)
    return obj
