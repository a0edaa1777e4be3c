"""The pure stages between the backend's list and the watches, and the report back."""
import gevent
from gevent.event import Event

from painchain_connector.model import WatchKey
from painchain_connector.reporting import Reporter, WatchHealth, cluster_problems
from painchain_connector.selection import LastKnownGood, ShrinkGuard
from painchain_connector.sources import select

TOKEN = "eyJhbGciOiJSUzI1NiJ9.tenant-token-value-0123456789"


def doc(id, *, tenant="t1", status="active", clusters=None):
    return {"id": id, "tenantId": tenant, "type": "kubernetes", "status": status, "config": {
        "name": id, "tags": [], "clusters": clusters if clusters is not None else [
            {"name": "prod", "server": "https://k8s.example.com", "token": TOKEN}]}}


def test_a_shrink_of_more_than_half_is_held_until_three_fetches_agree():
    guard = ShrinkGuard(confirmations=3)
    full = select([doc(f"i{n}") for n in range(4)])
    assert guard.review(full).held == ()
    for _ in range(2):
        verdict = guard.review(select([doc("i0")]))
        assert sorted(verdict.held) == ["i1", "i2", "i3"]
        assert sorted(i.id for i in verdict.integrations) == ["i0", "i1", "i2", "i3"]
        assert verdict.present == {"i0", "i1", "i2", "i3"}
    confirmed = guard.review(select([doc("i0")]))
    assert confirmed.held == () and [i.id for i in confirmed.integrations] == ["i0"]


def test_a_different_shrunken_set_restarts_the_count_and_small_removals_apply_at_once():
    guard = ShrinkGuard(confirmations=2)
    guard.review(select([doc(f"i{n}") for n in range(4)]))
    assert guard.review(select([])).held  # 1st empty
    assert guard.review(select([doc("i0")])).held  # another shrunken set: count restarts
    assert guard.review(select([doc("i0")])).held == ()  # 2nd agreeing fetch
    guard = ShrinkGuard(confirmations=3)
    guard.review(select([doc(f"i{n}") for n in range(4)]))
    assert guard.review(select([doc(f"i{n}") for n in range(3)])).held == ()  # one of four: at once


def test_an_integration_turned_inactive_counts_as_stopping_but_one_alone_applies_at_once():
    guard = ShrinkGuard()
    guard.review(select([doc("a"), doc("b")]))
    verdict = guard.review(select([doc("a"), doc("b", status="inactive")]))
    assert [i.id for i in verdict.integrations] == ["a"] and verdict.present == {"a", "b"}


def test_last_known_good_keeps_a_broken_edit_running_and_forgets_it_when_gone():
    keeper = LastKnownGood()
    keeper.apply(select([doc("a")]))
    broken = keeper.apply(select([doc("a", clusters="[{not json")]))
    assert [i.id for i in broken.integrations] == ["a"] and "config.clusters" in keeper.kept["a"][0]
    assert keeper.apply(select([])).integrations == ()
    assert keeper.apply(select([doc("a", clusters="[{not json")])).integrations == ()  # nothing to keep now


def health(cluster, resource, state, message=None, integration="i1", namespace=""):
    return WatchHealth(WatchKey(integration, cluster, resource, namespace), state, message)


def test_cluster_problems_group_forbidden_resources_into_one_problem_naming_the_permission():
    failing, problems = cluster_problems([
        health("prod", "pods", "forbidden"), health("prod", "events", "forbidden", namespace="shop"),
        health("prod", "services", "watching"), health("edge", "pods", "unreachable", "cannot reach the cluster"),
    ])
    assert failing == {("i1", "edge"): True, ("i1", "prod"): False}
    assert [(p.kind, p.cluster) for p in problems] == [("unreachable", "edge"), ("forbidden", "prod")]
    assert problems[1].message == ("the connector needs get, list and watch on events in namespace shop; "
                                   "pods in all namespaces")


def test_status_turns_error_after_two_failing_resyncs_and_back_and_each_problem_is_one_event_each_way():
    puts, events, now = [], [], [1000.0]
    listed = {"i1": "active"}  # what the backend answers in its list

    def update(integration_id, tenant, fields):
        puts.append((integration_id, tenant, dict(fields)))
        listed.update({integration_id: fields["status"]} if "status" in fields else {})
        return True

    reporter = Reporter(update=update, emit=events.append, last_sync_interval=600, clock=lambda: now[0])
    fetched = select([doc("i1")])

    def resync(state):
        reporter.report(serving=fetched.integrations, fetched=fetched, kept={},
                        health=[health("prod", "pods", state)], statuses=dict(listed))
        reporter._puts.join()
        now[0] += 60

    resync("unreachable")
    assert puts == [("i1", "t1", {"lastSync": "1970-01-01T00:16:40.000Z"})] and events == []
    resync("unreachable")
    assert puts[-1][2]["status"] == "error" and "lastSync" in puts[-1][2]
    assert [e.body["data"]["phase"] for e in events] == ["started"]
    resync("unreachable")
    assert len(puts) == 2  # nothing new to say, and lastSync was just set
    resync("watching")
    assert puts[-1][2]["status"] == "active"
    assert [(e.body["data"]["phase"], e.body["project"], e.tenant_id) for e in events] == [
        ("started", "prod:_integration", "t1"), ("resolved", "prod:_integration", "t1")]
    assert events[0].external_id.rsplit("-", 1)[0] == events[1].external_id.rsplit("-", 1)[0]  # same start hour


def test_a_rejected_config_is_posted_on_the_integrations_own_project_with_its_tenant():
    events = []
    reporter = Reporter(update=lambda *args: True, emit=events.append, clock=lambda: 1000.0)
    reporter.report(serving=(), fetched=select([doc("i1")]), kept={"i1": ("config.clusters: x",)}, health=[],
                    statuses={"i1": "active"})
    reporter._puts.join()
    assert [(e.body["project"], e.body["data"]["problem"], e.tenant_id) for e in events] == [
        ("_integration", "config", "t1")]


def test_a_failed_status_put_is_tried_again_at_the_next_resync_and_a_full_pool_never_blocks():
    answers, puts = [False, True], []

    def update(integration_id, tenant, fields):
        puts.append(dict(fields))
        return answers.pop(0) if answers else True

    fetched = select([doc("i1")])
    reporter = Reporter(update=update, emit=lambda e: None, clock=lambda: 1000.0)
    for _ in range(2):
        reporter.report(serving=(), fetched=fetched, kept={"i1": ("config.clusters: x",)}, health=[],
                        statuses={"i1": "active"})
        reporter._puts.join()
    assert [p.get("status") for p in puts] == ["error", "error"]

    blocked = Event()
    slow = Reporter(update=lambda *a: blocked.wait(), emit=lambda e: None, pool_size=1)
    many = select([doc(f"i{n}") for n in range(5)])
    with gevent.Timeout(1):  # would block on the second PUT if it waited for a slot
        slow.report(serving=(), fetched=many, kept={}, health=[], statuses={})
    blocked.set()
    slow._puts.join()


def test_an_inactive_integration_is_never_updated():
    puts = []
    reporter = Reporter(update=lambda *a: puts.append(a), emit=lambda e: None)
    fetched = select([doc("off", status="inactive")])
    reporter.report(serving=(), fetched=fetched, kept={}, health=[], statuses=fetched.statuses)
    reporter._puts.join()
    assert puts == []


def test_a_shrink_confirms_even_while_other_integrations_are_added():
    guard = ShrinkGuard(confirmations=3)
    guard.review(select([doc(f"i{n}") for n in range(4)]))
    for extra in range(3):
        verdict = guard.review(select([doc("i0")] + [doc(f"new{n}") for n in range(extra + 1)]))
    assert verdict.held == () and sorted(i.id for i in verdict.integrations) == ["i0", "new0", "new1", "new2"]


def test_kept_configs_count_against_the_tenants_watch_budget():
    from painchain_connector.schemas.integration import Limits

    limits = Limits(watches_per_tenant=6)  # one cluster x six resources
    keeper = LastKnownGood(limits=limits)
    keeper.apply(select([doc("a")], limits=limits))
    after = keeper.apply(select([doc("a", clusters="[{"), doc("b")], limits=limits))
    assert [i.id for i in after.integrations] == ["b"] and keeper.kept == {}


def test_a_repeated_id_never_routes_to_the_second_documents_tenant():
    first, second = doc("dup", tenant="tenant-a"), doc("dup", tenant="tenant-b")
    fetched = select([first, second])
    assert [i.tenant_id for i in fetched.integrations] == ["tenant-a"] and fetched.tenants == {"dup": "tenant-a"}


def test_a_config_nested_too_deeply_is_rejected_not_raised():
    evil = doc("evil", clusters="[" * 5000 + "]" * 5000)
    fetched = select([evil, doc("fine")])
    assert [i.id for i in fetched.integrations] == ["fine"]
    assert "nested too deeply" in fetched.rejected[0].errors[0]


def test_tokens_typed_into_the_clusters_text_area_are_redacted():
    import json

    from painchain_connector.logs import redact

    secret = "typed-into-the-ui-" + "x" * 20
    select([doc("ui", clusters=json.dumps([{"name": "c", "server": "https://k8s.example.com", "token": secret}]))])
    assert secret not in redact(f"oops {secret}")
