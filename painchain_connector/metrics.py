"""Prometheus metrics of one Connector, in its own CollectorRegistry (nothing global).

Label sets are bounded: kinds, resources, reasons and results are small fixed sets; no
object names; per-integration labels only when `Settings.metrics_per_integration` is on
(a SaaS deployment has thousands of integrations).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily


class _Registry(CollectorRegistry):
    """Exports no `*_created` series: prometheus-client adds one beside every counter and
    histogram by default, doubling the series for nothing a dashboard uses. Filtered here,
    because the library's own switch (`disable_created_metrics`) is process-wide and would
    change an embedding host's metrics too."""

    def collect(self):
        for metric in super().collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class Tally:
    """A labelled counter kept as plain ints and read at scrape time (a custom collector):
    for the one count of the watch path, taken per event, where a Counter's lock costs
    more than the rest of the bookkeeping (bench #1). `counts[labels] += 1`, no lock: one
    process, one thread of greenlets that never yield inside an increment."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], *, registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.counts: dict[tuple[str, ...], int] = {}
        registry.register(self)

    def describe(self):
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.counts.items()):
            family.add_metric(labels, value)
        yield family


class Metrics:
    def __init__(self, *, per_integration: bool = False) -> None:
        self.registry = _Registry(auto_describe=True)
        self.per_integration = per_integration
        r = self.registry
        self.watches = Gauge(
            "painchain_watches", "Watch streams by state", ["state"], registry=r
        )
        self.watch_restarts = Counter(
            "painchain_watch_restarts_total",
            "List/watch restarts by reason (cut, gone, stall, error, unreachable, forbidden, unauthorized, oversized)",
            ["resource", "reason"],
            registry=r,
        )
        self.stall_probes = Counter(
            "painchain_stall_probes_total",
            "Stall probes by outcome (quiet, stalled, path_stalled, inconclusive, skipped, error)",
            ["outcome"],
            registry=r,
        )
        self.events_observed = Tally(
            "painchain_k8s_changes_observed_total", "Watch changes observed", ["resource", "type"], registry=r
        )
        self.events_emitted = Counter(
            "painchain_events_emitted_total", "PainChain events produced by detection", ["kind", "reason"], registry=r
        )
        self.events_posted = Counter(
            "painchain_events_posted_total",
            "Events handed to the backend or sink, by result (stored, duplicate, retry, dead_letter)",
            ["kind", "result"],
            registry=r,
        )
        self.events_dropped = Counter(
            "painchain_events_dropped_total",
            "Events dropped without delivery, by reason (overflow, integration_gone, shutdown)",
            ["reason"],
            registry=r,
        )
        self.changes_filtered = Counter(
            "painchain_changes_filtered_total",
            "Detected changes a tenant's filters left out, by reason (annotation, namespace_annotation, "
            "excluded_namespace, left_selector)",
            ["reason"],
            registry=r,
        )
        self.outbox_depth = Gauge("painchain_outbox_depth", "Events waiting in memory for delivery", registry=r)
        self.spool_size = Gauge("painchain_spool_events", "Events waiting in the on-disk spool", registry=r)
        self.post_latency = Histogram(
            "painchain_post_seconds",
            "Latency of one POST /events",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.resync_duration = Histogram(
            "painchain_resync_seconds", "Duration of one integrations re-sync", ["outcome"], registry=r
        )
        # Opt-in (METRICS_PER_INTEGRATION): one series per integration, for self-hosted
        # deployments with a handful of them; off by default (SaaS has thousands).
        self.integration_events = (
            Counter("painchain_integration_events_emitted_total", "Events produced per integration",
                    ["integration"], registry=r)
            if per_integration else None
        )
        self.integrations = Gauge(
            "painchain_integrations", "Integrations by validity (valid, partial, invalid, inactive)", ["validity"],
            registry=r,
        )
