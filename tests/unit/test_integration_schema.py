"""Integration config validation: every rule of the backend contract, and no secret echoed."""
import base64
import json

from hypothesis import given, settings as hsettings, strategies as st

from painchain_connector.schemas.integration import Resources, parse_integration
from painchain_connector.sources import select

TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-token-value-0123456789"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUsecretcertbody\n-----END CERTIFICATE-----\n"
CERT = base64.b64encode(PEM.encode()).decode()


def doc(*clusters, **config):
    base = {"name": "Prod", "tags": ["production"], "clusters": list(clusters)}
    base.update(config)
    return {"id": "int-1", "tenantId": "t1", "type": "kubernetes", "name": "Prod", "status": "active", "config": base}


def token_cluster(name="prod", **extra):
    return {"name": name, "server": "https://10.0.0.1:6443", "token": TOKEN, "certificate": CERT, **extra}


def test_token_cluster_with_ca_becomes_typed_integration():
    result = parse_integration(doc(token_cluster()))
    integ = result.integration
    assert result.errors == ()
    assert integ.id == "int-1" and integ.tenant_id == "t1" and integ.tags == ("production",)
    cluster = integ.clusters[0]
    assert cluster.mode == "token" and cluster.ca_pem == PEM.encode() and not cluster.skip_tls_verify
    assert integ.namespaces == () and integ.resources == Resources()


def test_context_cluster_is_kubeconfig_mode():
    cluster = parse_integration(doc({"name": "dev", "context": "minikube"})).integration.clusters[0]
    assert cluster.mode == "kubeconfig" and cluster.context == "minikube"


def test_mixing_token_and_context_rejects_only_that_cluster():
    result = parse_integration(doc(token_cluster("good"), token_cluster("mixed", context="minikube")))
    assert [c.name for c in result.integration.clusters] == ["good"]
    assert len(result.errors) == 1 and "'mixed'" in result.errors[0] and "either" in result.errors[0]


def test_cluster_with_neither_mode_is_rejected_with_reason():
    result = parse_integration(doc({"name": "empty"}))
    assert result.integration is None
    assert any("cluster 'empty'" in e and "needs server+token" in e for e in result.errors)


def test_server_without_token_names_the_missing_field():
    result = parse_integration(doc({"name": "half", "server": "https://x:6443"}, token_cluster("ok")))
    assert [c.name for c in result.integration.clusters] == ["ok"]
    assert any("cluster 'half': token:" in e for e in result.errors)


def test_certificate_must_be_base64_pem():
    not_b64 = parse_integration(doc(token_cluster(certificate="%%%not-base64%%%")))
    not_pem = parse_integration(doc(token_cluster(certificate=base64.b64encode(b"hello").decode())))
    assert not_b64.integration is None and "not valid base64" in " ".join(not_b64.errors)
    assert not_pem.integration is None and "BEGIN CERTIFICATE" in " ".join(not_pem.errors)


def test_skip_tls_verify_without_certificate_is_valid():
    cluster = parse_integration(doc({"name": "p", "server": "https://x:6443", "token": TOKEN, "skipTLSVerify": True}))
    assert cluster.integration.clusters[0].skip_tls_verify is True


def test_duplicate_cluster_names_reject_the_later_one():
    result = parse_integration(doc(token_cluster("same"), {"name": "same", "context": "c"}))
    assert [c.mode for c in result.integration.clusters] == ["token"]
    assert any("duplicate" in e for e in result.errors)


def test_empty_clusters_rejects_the_integration():
    result = parse_integration(doc())
    assert result.integration is None and any(e.startswith("config.clusters") for e in result.errors)


def test_namespaces_must_be_valid_names_and_empty_means_all():
    assert parse_integration(doc(token_cluster(), namespaces=[])).integration.namespaces == ()
    ok = parse_integration(doc(token_cluster(), namespaces=["default", "prod-1", "default"]))
    assert ok.integration.namespaces == ("default", "prod-1")
    bad = parse_integration(doc(token_cluster(), namespaces=["Prod_NS"]))
    assert bad.integration is None and any("config.namespaces" in e for e in bad.errors)


def test_resources_absent_keys_default_true_and_non_booleans_rejected():
    integ = parse_integration(doc(token_cluster(), resources={"events": False})).integration
    assert integ.resources.enabled() == ("pods", "deployments", "services", "statefulsets", "daemonsets")
    bad = parse_integration(doc(token_cluster(), resources={"pods": "maybe"}))
    assert bad.integration is None and any("config.resources.pods" in e for e in bad.errors)


def test_name_and_tags_are_required():
    config = {"clusters": [token_cluster()]}
    result = parse_integration({"id": "x", "config": config})
    assert result.integration is None
    assert any(e.startswith("config.name") for e in result.errors)
    assert any(e.startswith("config.tags") for e in result.errors)


def test_unknown_keys_are_ignored():
    raw = doc(token_cluster(color="blue"), futureOption=True)
    raw["extra"] = 1
    assert parse_integration(raw).errors == ()


def test_one_invalid_integration_does_not_affect_others():
    good = doc(token_cluster())
    bad = {"id": "int-2", "type": "kubernetes", "config": {"name": "x"}}
    other_type = {"id": "gh", "type": "github", "config": {}}
    inactive = dict(doc(token_cluster()), id="int-3", status="inactive")
    fetched = select([bad, good, other_type, inactive, "garbage"])
    assert [i.id for i in fetched.integrations] == ["int-1"]
    assert [r.integration_id for r in fetched.rejected] == ["int-2", "<no id>"]
    assert fetched.inactive == 1


def test_repr_of_a_cluster_hides_token_and_certificate():
    integ = parse_integration(doc(token_cluster())).integration
    assert TOKEN not in repr(integ) and CERT not in repr(integ)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "tags", "clusters", "server", "context", "namespaces", "resources",
                         "skipTLSVerify", "config", "id", "pods", "x"]),
        children, max_size=6),
    max_leaves=25,
)
# Secrets sit where users put them: in token and certificate fields, valid or malformed.
clusters = st.fixed_dictionaries({}, optional={
    "name": json_values, "server": st.just("https://10.0.0.1:6443") | json_values,
    "token": st.just(TOKEN) | st.just(TOKEN + "\n") | json_values,
    "certificate": st.just(CERT) | st.just(CERT[:-4]) | st.just(PEM) | json_values,
    "context": json_values, "skipTLSVerify": json_values,
})
documents = st.one_of(
    json_values,
    st.lists(clusters | json_values, max_size=3).map(lambda cs: doc(*cs)),
    st.builds(lambda c, ns, res: doc(c, namespaces=ns, resources=res), clusters, json_values, json_values),
)


@hsettings(max_examples=300, deadline=None)
@given(documents)
def test_random_documents_only_ever_yield_validation_errors_without_secrets(raw):
    result = parse_integration(raw)  # must not raise
    text = json.dumps(result.errors) + repr(result.integration)
    assert TOKEN not in text and CERT[:40] not in text and "secretcertbody" not in text
    assert all(isinstance(e, str) for e in result.errors)


def test_backend_documents_may_not_use_the_connectors_own_service_account_unless_allowed():
    in_cluster = doc(token_cluster("remote"), {"name": "host", "inCluster": True})
    refused = select([in_cluster], allow_in_cluster=False)
    assert [c.name for c in refused.integrations[0].clusters] == ["remote"]
    assert any("'host'" in e and "ALLOW_IN_CLUSTER" in e for e in refused.rejected[0].errors)
    only_host = select([doc({"name": "host", "inCluster": True})], allow_in_cluster=False)
    assert only_host.integrations == () and only_host.rejected[0].integration is None
    allowed = select([in_cluster], allow_in_cluster=True)
    assert [c.name for c in allowed.integrations[0].clusters] == ["remote", "host"]


def test_kubeconfig_contexts_from_the_backend_can_be_refused():
    ctx = doc({"name": "dev", "context": "minikube"})
    assert select([ctx]).integrations[0].clusters[0].context == "minikube"  # the contract allows it
    assert select([ctx], allow_contexts=False).integrations == ()
