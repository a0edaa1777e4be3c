"""What a tenant (or the PainChain UI on a tenant's behalf) writes into an integration:
UI shapes accepted, limits enforced, the connector's own credentials and addresses refused."""
import ipaddress

import pytest

from painchain_connector.egress import EgressPolicy, parse_networks, url_problem
from painchain_connector.schemas.integration import Limits, parse_integration
from painchain_connector.sources import select

TOKEN = "eyJhbGciOiJSUzI1NiJ9.tenant-token-value-0123456789"


def ui_doc(*, namespaces=None, clusters=None, tenant="t1", resources=None, **config):
    cfg = {"name": "Shop", "tags": ["shop"],
           "clusters": clusters if clusters is not None else [
               {"name": "prod", "server": "https://k8s.example.com:6443", "token": TOKEN}]}
    if namespaces is not None:
        cfg["namespaces"] = namespaces
    if resources is not None:
        cfg["resources"] = resources
    cfg.update(config)
    return {"id": "int-ui", "tenantId": tenant, "type": "kubernetes", "status": "active", "config": cfg}


@pytest.mark.parametrize("typed, expected", [
    ("shop-a, shop-b", ("shop-a", "shop-b")),
    ("shop-a,shop-b, other", ("shop-a", "shop-b", "other")),
    ("shop-a shop-b\nshop-c", ("shop-a", "shop-b", "shop-c")),
    ("", ()),
    ("  ", ()),
    (None, ()),
    (["shop-a"], ("shop-a",)),
])
def test_namespaces_typed_into_the_ui_text_field_are_watched_as_a_list(typed, expected):
    result = parse_integration(ui_doc(namespaces=typed))
    assert result.errors == () and result.integration.namespaces == expected


def test_a_bad_namespace_in_the_typed_string_is_named():
    result = parse_integration(ui_doc(namespaces="shop-a, Shop_B"))
    assert result.integration is None and any("config.namespaces" in e for e in result.errors)


def test_clusters_typed_as_invalid_json_get_a_per_field_error_without_the_text():
    typed = '[{"name": "prod", "server": "https://k8s.example.com", "token": "' + TOKEN + '",}]'
    result = parse_integration(ui_doc(clusters=typed))
    assert result.integration is None
    assert any(e.startswith("config.clusters: not valid JSON (at line 1") for e in result.errors), result.errors
    assert not any(TOKEN in e for e in result.errors)


def test_clusters_and_resources_given_as_json_text_are_parsed():
    clusters = '[{"name": "prod", "server": "https://k8s.example.com", "token": "' + TOKEN + '"}]'
    result = parse_integration(ui_doc(clusters=clusters, resources='{"events": false}'))
    assert result.errors == ()
    assert result.integration.clusters[0].name == "prod" and "events" not in result.integration.resources.enabled()


def test_an_empty_tenant_id_is_an_invalid_integration_not_a_tenantless_one():
    result = parse_integration(ui_doc(tenant=""))
    assert result.integration is None and any(e.startswith("tenantId:") for e in result.errors)


@pytest.mark.parametrize("field, value, message", [
    ("clusters", [{"name": f"c{i}", "server": "https://k8s.example.com", "token": TOKEN} for i in range(3)],
     "config.clusters: more than 2 clusters"),
    ("namespaces", [f"ns-{i}" for i in range(4)], "config.namespaces: more than 3 namespaces"),
    ("tags", ["a", "b", "c"], "config.tags: more than 2 tags"),
    ("tags", ["x" * 11], "config.tags: a tag is longer than 10"),
])
def test_limits_per_integration_reject_with_the_field_named(field, value, message):
    limits = Limits(clusters=2, namespaces=3, tags=2, tag_length=10)
    result = parse_integration(ui_doc(**{field: value}), limits=limits)
    assert result.integration is None and any(e.startswith(message) for e in result.errors), result.errors


def test_a_tenant_past_its_watch_budget_gets_its_newest_integration_refused():
    docs = []
    for i in range(3):
        doc = ui_doc(namespaces=["a", "b"])  # 1 cluster x 6 resources x 2 namespaces = 12 watches
        doc["id"] = f"int-{i}"
        docs.append(doc)
    other = ui_doc(namespaces=["a", "b"], tenant="t2")
    other["id"] = "int-other"
    fetched = select(docs + [other], limits=Limits(watches_per_tenant=30))
    assert [i.id for i in fetched.integrations] == ["int-0", "int-1", "int-other"]
    assert [r.integration_id for r in fetched.rejected] == ["int-2"]
    assert "more than its tenant has left of 30" in fetched.rejected[0].errors[-1]


def test_kubeconfig_contexts_are_accepted_from_the_backend_for_tenantless_integrations_only():
    ctx = [{"name": "dev", "context": "kind-dev"}]
    fetched = select([ui_doc(clusters=ctx, tenant="t1"), {**ui_doc(clusters=ctx, tenant=None), "id": "own"}],
                     allow_contexts=False, restrict_tenants=True)
    assert [i.id for i in fetched.integrations] == ["own"]
    assert "ALLOW_KUBECONFIG_CONTEXTS" in fetched.rejected[0].errors[-1]
    allowed = select([ui_doc(clusters=ctx, tenant="t1")], allow_contexts=True, restrict_tenants=True)
    assert [i.id for i in allowed.integrations] == ["int-ui"]


@pytest.mark.parametrize("server, restricted, problem", [
    ("https://k8s.example.com:6443/prefix", True, None),
    ("http://k8s.example.com:6443", True, "must be https://"),
    ("http://k8s.example.com:6443", False, None),
    ("https://user:pw@k8s.example.com", False, "must not carry a user"),
    ("https://k8s.example.com/api?", False, "must not have a query"),
    ("https://k8s.example.com/x?a=b", False, "must not have a query"),
    ("https://k8s.example.com/#frag", False, "must not have a query"),
])
def test_server_url_shape(server, restricted, problem):
    found = url_problem(server, restricted=restricted)
    assert (found is None) if problem is None else (problem in found)


def test_tenant_token_clusters_from_the_backend_are_restricted_and_https_only():
    plain = ui_doc(clusters=[{"name": "clear", "server": "http://k8s.example.com", "token": TOKEN},
                             {"name": "tls", "server": "https://k8s.example.com", "token": TOKEN}])
    fetched = select([plain], restrict_tenants=True)
    [integ] = fetched.integrations
    assert [(c.name, c.restricted) for c in integ.clusters] == [("tls", True)]
    assert "cluster 'clear': server: must be https://" in fetched.rejected[0].errors[0]
    own = select([{**plain, "tenantId": None}], restrict_tenants=True).integrations[0]
    assert [(c.name, c.restricted) for c in own.clusters] == [("clear", False), ("tls", False)]


@pytest.mark.parametrize("address, refused", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("10.1.2.3", None), ("203.0.113.9", None), ("2001:db8::1", None),
])
def test_egress_policy_refuses_the_hosts_own_and_metadata_addresses(address, refused):
    why = EgressPolicy().refusal(address)
    assert (why is None) if refused is None else (refused in why)


def test_allowed_networks_re_allow_and_denied_networks_add_and_win():
    policy = EgressPolicy(allowed=parse_networks("127.0.0.0/8"), denied=parse_networks("10.96.0.0/12, 127.0.0.5/32"))
    assert policy.refusal("127.0.0.1") is None
    assert "DENIED_SERVER_NETWORKS" in policy.refusal("10.96.0.1")
    assert "DENIED_SERVER_NETWORKS" in policy.refusal("127.0.0.5")
    assert policy.refusal("10.0.0.1") is None
    with pytest.raises(ValueError, match="'nope'"):
        parse_networks("10.0.0.0/8, nope")
    assert parse_networks(["fd00::/8"]) == (ipaddress.ip_network("fd00::/8"),)
