"""What /metrics exports."""
from prometheus_client.exposition import generate_latest

from painchain_connector.metrics import Metrics


def test_metrics_export_no_created_series_beside_counters_and_histograms():
    metrics = Metrics()
    metrics.watch_restarts.labels("pods", "cut").inc()
    metrics.post_latency.observe(0.1)
    text = generate_latest(metrics.registry).decode()
    assert 'painchain_watch_restarts_total{reason="cut",resource="pods"} 1.0' in text
    assert "painchain_post_seconds_count 1.0" in text
    assert "_created" not in text


def test_changes_observed_are_counted_without_a_lock_and_exported_as_a_counter():
    metrics = Metrics()
    counts = metrics.events_observed.counts
    for kind in ("ADDED", "MODIFIED", "MODIFIED"):
        counts[("pods", kind)] = counts.get(("pods", kind), 0) + 1
    assert metrics.registry.get_sample_value("painchain_k8s_changes_observed_total",
                                             {"resource": "pods", "type": "MODIFIED"}) == 2
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE painchain_k8s_changes_observed_total counter" in text
    assert 'painchain_k8s_changes_observed_total{resource="pods",type="ADDED"} 1.0' in text
