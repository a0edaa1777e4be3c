"""Per-integration filters (issue 19 point 4): validated config, which watches they need,
and what the Gate lets through. The apiserver's side (labelSelector) is in tests/e2e."""
from __future__ import annotations

import copy

from painchain_connector.filtering import ClusterNotes, FilterBook, Filters, Gate
from painchain_connector.orchestration import state_key, wanted_watches
from painchain_connector.schemas.integration import parse_integration
from tests.unit.test_detecting_deployments import CTX, deployment
from tests.unit.test_detecting_events import event
from tests.unit.test_integration_schema import doc, token_cluster


def integration(**config):
    result = parse_integration(doc(token_cluster(), **config))
    assert result.integration is not None, result.errors
    return result.integration


def errors(**config):
    return parse_integration(doc(token_cluster(), **config)).errors


# -- config -----------------------------------------------------------------------------

def test_filters_arrive_as_the_ui_types_them_and_default_to_nothing_left_out():
    assert (integration().exclude_namespaces, integration().label_selector) == ((), "")
    typed = integration(excludeNamespaces="kube-system, *-test", labelSelector="  tier=backend,env in (a, b) ")
    assert typed.exclude_namespaces == ("kube-system", "*-test")
    assert typed.label_selector == "tier=backend,env in (a, b)"
    assert integration(excludeNamespaces=["a"], labelSelector="").label_selector == ""
    assert integration(excludeNamespaces=None, labelSelector=None).exclude_namespaces == ()


def test_invalid_filters_are_rejected_naming_the_field_never_the_text():
    assert errors(labelSelector="app = web = x") == (
        "config.labelSelector: requirement 1 is not a label selector requirement (key, !key, key=value, key!=value, "
        "key in (a,b), key notin (a,b)).",)
    (problem,) = errors(excludeNamespaces="Kube_System")
    assert problem.startswith("config.excludeNamespaces.0: not a namespace name or shell-style pattern")
    (problem,) = errors(labelSelector="a=" + "b" * 2000)
    assert problem == "config.labelSelector: longer than 1024 characters."


# -- which watches ----------------------------------------------------------------------

def test_excluded_namespaces_of_a_list_are_not_watched_and_all_excluded_means_none():
    watched = wanted_watches([integration(namespaces=["shop", "shop-test", "kube-system"],
                                          excludeNamespaces="*-test kube-system", resources={"events": False})])
    assert {k.namespace for k in watched} == {"shop"}
    assert wanted_watches([integration(namespaces=["a-test"], excludeNamespaces="*-test")]) == {}


def test_an_exclusion_change_restarts_nothing_and_a_selector_change_restarts_all_but_events():
    before = wanted_watches([integration()])
    excluded = wanted_watches([integration(excludeNamespaces="kube-system")])
    assert {k: s.fingerprint for k, s in before.items()} == {k: s.fingerprint for k, s in excluded.items()}
    selected = wanted_watches([integration(labelSelector="team=shop")])
    restarted = {k.resource for k in before if before[k].fingerprint != selected[k].fingerprint}
    assert restarted == {"pods", "deployments", "services", "statefulsets", "daemonsets"}
    assert selected[next(k for k in selected if k.resource == "events")].label_selector == ""
    # another selector sees other objects: its state is never diffed against this one's
    key = next(k for k in selected if k.resource == "pods")
    assert state_key(selected[key]) != state_key(before[key])


# -- what the Gate lets through -----------------------------------------------------------

def _gate(resource="deployments", notes=None, book=None, **kw):
    book = book or FilterBook()
    return Gate(integration_id="int-1", resource=resource, filters=book, notes=notes or ClusterNotes(), **kw), book


def _update(gate, old, new):
    state = gate.project("deployments", old)
    return gate.detect("deployments", state, gate.project("deployments", new), deleted=False, ctx=CTX)[0]


def _annotated(obj, value="true"):
    obj = copy.deepcopy(obj)
    obj["metadata"]["annotations"] = {"painchain.io/ignore": value}
    return obj


def test_an_annotated_object_reports_nothing_while_its_neighbour_does():
    gate, _ = _gate()
    image = dict(generation=2, image="example.com/web:2", rv="101")
    assert _update(gate, _annotated(deployment()), _annotated(deployment(**image))) == []
    assert [c.reason for c in _update(gate, deployment(), deployment(**image))][:1] == ["Updated"]
    assert _update(gate, _annotated(deployment(), "false"), _annotated(deployment(**image), "false")) != []


def test_an_exclusion_applies_to_the_next_change_without_a_new_gate():
    counted = []
    gate, book = _gate(counted=lambda reason, n: counted.append((reason, n)))
    image = dict(generation=2, image="example.com/web:2", rv="101")
    assert _update(gate, deployment(), deployment(**image)) != []
    book.update({"int-1": Filters(exclude_namespaces=("sh*",))})
    assert _update(gate, deployment(), deployment(**image)) == []
    book.update({"other": Filters(exclude_namespaces=("shop",))})  # another integration's filter
    assert _update(gate, deployment(), deployment(**image)) != []
    assert counted == [("excluded_namespace", 2)]  # the Updated and its Rollout Complete, counted for the operator


def test_an_annotated_namespace_silences_its_objects():
    notes = ClusterNotes(ignored_namespaces={"shop"})
    gate, _ = _gate(notes=notes)
    assert _update(gate, deployment(), deployment(generation=2, image="example.com/web:2", rv="101")) == []


def test_an_event_follows_its_involved_object_when_that_object_opts_out():
    notes = ClusterNotes()
    pods, _ = _gate("pods", notes=notes)
    events, _ = _gate("events", notes=notes)
    pod = {"metadata": {"name": "api-7d9f", "namespace": "shop", "uid": "p0d", "resourceVersion": "1",
                        "annotations": {"painchain.io/ignore": "true"}}, "spec": {}, "status": {"phase": "Running"}}
    pods.project("pods", pod)
    assert events.detect("events", None, events.project("events", event()), deleted=False, ctx=CTX)[0] == []
    pod["metadata"]["annotations"] = {}
    pods.project("pods", pod)
    assert events.detect("events", None, events.project("events", event(rv="101")), deleted=False, ctx=CTX)[0] != []


def test_a_deletion_under_a_label_selector_is_reported_only_when_the_object_is_gone():
    exists = {"answer": True}
    gate, _ = _gate(still_exists=lambda compact: exists["answer"])
    final = gate.project("deployments", deployment())
    assert gate.detect("deployments", final, final, deleted=True, ctx=CTX)[0] == []  # relabelled out
    exists["answer"] = False
    assert [c.reason for c in gate.detect("deployments", final, final, deleted=True, ctx=CTX)[0]] == ["Deleted"]
