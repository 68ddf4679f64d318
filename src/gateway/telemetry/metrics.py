"""Every Prometheus metric of the gateway, defined once (architecture.md, Telemetry).

Names are `gateway_<what>_<unit>`, counters end in `_total`, labels come only from bounded sets
(partner ids from config, stage, syntax, outcome, reason code) — never file names or flow ids.
A `Metrics` object owns its own CollectorRegistry, so tests and several gateways in one process
never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1e3, 1e4, 1e5, 1e6, 1e7, 1e8)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.flows_received = Counter(
            "gateway_flows_received_total", "Flows taken in", ["partner", "source"], registry=r
        )
        self.flows_completed = Counter(
            "gateway_flows_completed_total",
            "Flows that reached a terminal state",
            ["partner", "outcome"],
            registry=r,
        )
        self.flows_rejected = Counter(
            "gateway_flows_rejected_total", "Flows rejected, by reason code", ["reason"], registry=r
        )
        self.invoices = Counter(
            "gateway_invoices_total", "Invoices judged, by outcome", ["syntax", "outcome"], registry=r
        )
        self.stage_duration = Histogram(
            "gateway_stage_duration_seconds",
            "Time spent in each stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.flow_latency = Histogram(
            "gateway_flow_latency_seconds",
            "From file taken to acknowledgement written",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.flow_bytes = Histogram(
            "gateway_flow_size_bytes", "Size of flows taken in", buckets=SIZE_BUCKETS, registry=r
        )
        self.acks_written = Counter(
            "gateway_acks_written_total", "Acknowledgements written", ["status"], registry=r
        )
        self.invoice_statuses = Counter(
            "gateway_invoice_statuses_total",
            "Invoice lifecycle statuses recorded, by status code (200, 203, 210...)",
            ["code"],
            registry=r,
        )
        self.deliveries = Counter(
            "gateway_deliveries_total", "Deliveries by sink and result", ["sink", "result"], registry=r
        )
        self.flow_retries = Counter(
            "gateway_flow_retries_total",
            "Transient failures that were scheduled for retry",
            ["stage"],
            registry=r,
        )
        # SFTP server
        self.as2_messages = Counter(
            "gateway_as2_messages_total",
            "AS2 messages received, by partner and result (processed or the RFC 4130 error modifier)",
            ["partner", "result"],
            registry=r,
        )
        self.sftp_logins = Counter(
            "gateway_sftp_logins_total", "SFTP authentication attempts", ["result"], registry=r
        )
        self.sftp_sessions = Gauge("gateway_sftp_sessions", "Open SFTP sessions", registry=r)
        self.sftp_uploads = Counter(
            "gateway_sftp_uploads_total",
            "SFTP uploads by partner and result",
            ["partner", "result"],
            registry=r,
        )
        self.sftp_bytes_received = Counter(
            "gateway_sftp_received_bytes_total", "Bytes received over SFTP", ["partner"], registry=r
        )
        self.sftp_bytes_sent = Counter(
            "gateway_sftp_sent_bytes_total",
            "Bytes sent over SFTP (acknowledgement downloads)",
            ["partner"],
            registry=r,
        )
        self.sftp_transfer_duration = Histogram(
            "gateway_sftp_transfer_duration_seconds",
            "Duration of SFTP uploads",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
