"""Prometheus artefacts: rules and config checked and unit-tested by promtool, a running gateway's scrape
checked by `promtool check metrics`, and every PromQL expression of the dashboard and the alert rules
naming only metrics (and labels) the gateway really exposes.

promtool comes from the Debian package `prometheus`; tests needing it skip when it is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from gateway.statemachine import FlowState
from gateway.store.db import Store
from gateway.store.queries import list_flows
from gateway.telemetry.collectors import COLLECTOR_METRICS, StoreCollector
from gateway.telemetry.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "deploy" / "prometheus" / "gateway-alerts.yml"
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "gateway-dashboard.json"
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}  # fmt: skip


def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path is None:
        pytest.skip(
            "promtool not found: install the Debian package `prometheus` (apt-get install -y prometheus)"
        )
    return path


def run_promtool(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [promtool(), *args], input=stdin.decode() if stdin is not None else None, capture_output=True, text=True,
        cwd=cwd, timeout=120,
    )  # fmt: skip
    return result


def load_yaml(path: Path) -> Any:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the alert rules")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -- what the gateway exposes ---------------------------------------------------------------------
def known_series(tmp_path: Path) -> dict[str, set[str]]:
    """Every sample name the gateway can expose → the labels it may carry."""
    series: dict[str, set[str]] = {"up": set()}
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, labels, kind = metric._name, set(metric._labelnames), metric._type
        if kind == "counter":
            series[name + "_total"] = labels
        elif kind == "histogram":
            series[name + "_bucket"] = labels | {"le"}
            series[name + "_sum"] = series[name + "_count"] = labels
        else:
            series[name] = labels
    store = Store(f"sqlite:///{tmp_path / 'names.db'}")
    store.migrate()
    try:
        collector = StoreCollector(store, {}, [("pack", "1")])
        for family in collector.collect():
            series[family.name] = {label for sample in family.samples for label in sample.labels}
    finally:
        store.close()
    assert set(COLLECTOR_METRICS) <= set(series), "the collector exposes every metric it declares"
    return {name: labels | TARGET_LABELS for name, labels in series.items()}


def _strip(expr: str) -> str:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    return re.sub(r"\$__\w+|\$\{[^}]*\}|\$\w+", "", expr)  # Grafana variables


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (functions, keywords and label lists left out)."""
    text = _strip(expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", text)  # numbers
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or aggregation
        if match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def matchers(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of every label matcher written after a metric name."""
    found = []
    for selector in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        for m in re.finditer(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', selector.group(2)):
            found.append((selector.group(1), m.group(1), m.group(2), m.group(3)))
    return found


def check_expressions(exprs: list[str], known: dict[str, set[str]]) -> list[str]:
    problems = []
    for expr in exprs:
        names = metric_names(expr)
        if not names:
            problems.append(f"no metric found in {expr!r}")
        problems += [f"unknown metric {n!r} in {expr!r}" for n in sorted(names - set(known))]
        for metric, label, _, value in matchers(expr):
            if metric in known and label not in known[metric]:
                problems.append(f"{metric} has no label {label!r} (in {expr!r})")
            if label == "state" and "$" not in value:
                states = set(value.split("|"))
                problems += [
                    f"unknown state {s!r} in {expr!r}" for s in sorted(states - {s.value for s in FlowState})
                ]
    return problems


def test_name_extraction_sees_what_it_must() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, stage) (rate(gateway_stage_duration_seconds_bucket'
            '{instance=~"$instance"}[$__rate_interval]))) / on (job) group_left gateway:x:y > 15 * 60')  # fmt: skip
    assert metric_names(expr) == {"gateway_stage_duration_seconds_bucket", "gateway:x:y"}
    assert matchers('a_total{outcome="error", job=~"g.*"}') == [
        ("a_total", "outcome", "=", "error"),
        ("a_total", "job", "=~", "g.*"),
    ]
    assert check_expressions(["rate(gateway_nope_total[5m])"], {"up": set()})  # an unknown name is reported


# -- the dashboard --------------------------------------------------------------------------------
def dashboard_exprs() -> tuple[dict[str, Any], list[str], list[str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    variable_queries = [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return dashboard, exprs, variable_queries


def test_dashboard_is_grafana_json_with_the_panels_asked_for() -> None:
    dashboard, exprs, _ = dashboard_exprs()
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["partner"]["includeAll"] and variables["partner"]["multi"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    joined = "\n".join(exprs)
    for needle in (
        "rate(gateway_flows_received_total", "gateway_flows_completed_total", "sum by (reason)",
        "histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,",
        "gateway_flow_latency_seconds_bucket", "gateway_stage_duration_seconds", "gateway_flows{",
        "gateway_oldest_pending_age_seconds", "gateway_deliveries_total", "gateway_outbox_pending",
        "gateway_sftp_logins_total", "gateway_sftp_received_bytes_total", 'partner=~"$partner"',
    ):  # fmt: skip
        assert needle in joined, f"the dashboard shows {needle}"
    assert any(p.get("repeat") == "partner" for p in dashboard["panels"]), (
        "a per-partner row repeats by $partner"
    )


def test_dashboard_names_only_real_metrics(tmp_path: Path) -> None:
    _, exprs, variable_queries = dashboard_exprs()
    known = known_series(tmp_path)
    assert check_expressions(exprs, known) == []
    for query in variable_queries:
        inner = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert inner, query
        assert check_expressions([inner.group(1)], known) == []
        assert inner.group(2) in known[next(iter(metric_names(inner.group(1))))]


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    promtool()
    _, exprs, _ = dashboard_exprs()
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for n, expr in enumerate(exprs):
        concrete = re.sub(r"\$__\w+", "5m", expr)
        concrete = re.sub(r"\$\w+", ".*", concrete)
        rules += [f"      - record: dashboard:expr_{n}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


# -- the alert rules ------------------------------------------------------------------------------
def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_example_config(tmp_path: Path) -> None:
    for path in (PROM_CONFIG, ALERTS):
        shutil.copy(path, tmp_path / path.name)  # the config names the rules file beside it
    result = run_promtool("check", "config", str(tmp_path / PROM_CONFIG.name))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_cover_the_issue_and_name_only_real_metrics(tmp_path: Path) -> None:
    groups = load_yaml(ALERTS)["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    alerts = {rule["alert"] for rule in rules if "alert" in rule}
    assert {"GatewayDown", "GatewayAbsent", "GatewayBacklogStale", "GatewayRejectionRatioSpike",
            "GatewayDeliveryDeadLetters", "GatewayQuarantinedFlows", "GatewayStoreDown"} <= alerts  # fmt: skip
    known = known_series(tmp_path)
    recorded = {rule["record"]: TARGET_LABELS for rule in rules if "record" in rule}
    assert check_expressions([rule["expr"] for rule in rules], known | recorded) == []
    for rule in rules:
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("critical", "warning")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _expected(alert: str, labels: dict[str, str], summary: str) -> dict[str, Any]:
    """An expected alert: its labels, the summary as rendered, the description from the rules file."""
    rule = next(r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if r.get("alert") == alert)
    description = re.sub(
        r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], rule["annotations"]["description"]
    )
    assert "{{" not in description, "descriptions only use $labels (so this test can render them)"
    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {"summary": summary, "description": description},
    }


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """`promtool test rules`: each alert quiet on a healthy series, firing on a bad one."""
    promtool()
    gw = {"job": "gateway", "instance": "gw:9464"}
    sel = 'job="gateway", instance="gw:9464"'
    day = 24 * 60

    def case(
        series: list[tuple[str, str]], checks: list[tuple[str, str, list[dict[str, Any]]]]
    ) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": e} for t, a, e in checks],
        }

    tests = [
        case(
            [(f"gateway_oldest_pending_age_seconds{{{sel}}}", "0 600 600 1000+0x10")],
            [
                ("2m", "GatewayBacklogStale", []),  # 10 minutes old: fine
                ("4m", "GatewayBacklogStale", []),  # over 15 min, but not for 2 min yet
                (
                    "6m",
                    "GatewayBacklogStale",
                    [_expected("GatewayBacklogStale", gw, "Oldest pending flow on gw:9464 is 16m 40s old")],
                ),
            ],
        ),
        case(
            [(f"gateway_quarantined_flows{{{sel}}}", "0 0 1+0x10")],
            [
                ("1m", "GatewayQuarantinedFlows", []),
                (
                    "4m",
                    "GatewayQuarantinedFlows",
                    [_expected("GatewayQuarantinedFlows", gw, "1 flow(s) quarantined on gw:9464")],
                ),
            ],
        ),
        case(
            [
                (f'gateway_deliveries_total{{{sel}, sink="sftp", result="dead"}}', "0+0x5 1+0x10"),
                (f'gateway_deliveries_total{{{sel}, sink="sftp", result="ok"}}', "0+5x15"),
            ],
            [
                ("4m", "GatewayDeliveryDeadLetters", []),
                (
                    "7m",
                    "GatewayDeliveryDeadLetters",
                    [
                        _expected(
                            "GatewayDeliveryDeadLetters",
                            {**gw, "sink": "sftp"},
                            "Deliveries to sftp gave up on gw:9464",
                        )
                    ],
                ),
            ],
        ),  # fmt: skip
        case(
            [(f"up{{{sel}}}", "1 1 0+0x10"), (f"gateway_store_up{{{sel}}}", "1 1 1 0+0x10")],
            [
                ("2m", "GatewayDown", []),
                ("5m", "GatewayDown", [_expected("GatewayDown", gw, "Gateway gw:9464 is down")]),
                ("3m", "GatewayStoreDown", []),
                (
                    "6m",
                    "GatewayStoreDown",
                    [_expected("GatewayStoreDown", gw, "Gateway gw:9464 cannot read its database")],
                ),
                ("6m", "GatewayAbsent", []),
            ],
        ),
        case(
            [('up{job="other", instance="x:1"}', "1+0x10")],
            [
                (
                    "6m",
                    "GatewayAbsent",
                    [_expected("GatewayAbsent", {"job": "gateway"}, "No gateway target is scraped at all")],
                ),
            ],
        ),
        case(
            [(f"gateway_outbox_pending{{{sel}}}", "150+0x30")],
            [
                ("10m", "GatewayOutboxBacklog", []),
                (
                    "20m",
                    "GatewayOutboxBacklog",
                    [
                        _expected(
                            "GatewayOutboxBacklog", gw, "150 deliveries pending in the outbox of gw:9464"
                        )
                    ],
                ),
            ],
        ),
        # A day at 10 flows/min with no rejection, then 8 of every 18 rejected.
        case(
            [
                (f'gateway_flows_completed_total{{{sel}, partner="acme", outcome="ok"}}', f"0+10x{day + 60}"),
                (
                    f'gateway_flows_completed_total{{{sel}, partner="acme", outcome="error"}}',
                    f"0+0x{day} 8+8x60",
                ),
            ],
            [
                (f"{day}m", "GatewayRejectionRatioSpike", []),
                (f"{day + 5}m", "GatewayRejectionRatioSpike", []),  # pending: `for: 10m`
                (
                    f"{day + 30}m",
                    "GatewayRejectionRatioSpike",
                    [_expected("GatewayRejectionRatioSpike", gw, "Rejection ratio spike on gw:9464")],
                ),
            ],
        ),  # fmt: skip
        # A steady 30 % rejection ratio is no spike: the daily ratio is the same.
        case(
            [
                (f'gateway_flows_completed_total{{{sel}, partner="acme", outcome="ok"}}', f"0+7x{day + 60}"),
                (
                    f'gateway_flows_completed_total{{{sel}, partner="acme", outcome="error"}}',
                    f"0+3x{day + 60}",
                ),
            ],
            [
                (f"{day + 30}m", "GatewayRejectionRatioSpike", []),
            ],
        ),  # fmt: skip
    ]
    document = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}
    path = tmp_path / "alerts-test.yml"
    path.write_text(json.dumps(document, indent=1))  # JSON is YAML
    result = run_promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# -- a real scrape of a running gateway -----------------------------------------------------------
GATEWAY_TOML = """
[intake]
scan_interval_seconds = 0.2
min_age_seconds = 0.1
watch = false

[workers]
threads = 1
backoff_base_seconds = 0.2

[metrics]
port = 0

[sftp]
enabled = false

[partners.acme]
name = "ACME"
"""


@pytest.fixture
def running_gateway(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """The real daemon in this process (intake, workers, store, pipeline) with the monitoring server."""
    from gateway.datadir import DataDir
    from gateway.runtime.supervisor import Gateway
    from gateway.telemetry.collectors import collect_build_info, rule_pack_versions
    from gateway.telemetry.http import MonitoringServer
    from gateway.transforms.identify import Identifier
    from gateway.validation.pool import ValidationPool

    data_dir = DataDir(tmp_path / "data")
    data_dir.root.mkdir(parents=True)
    data_dir.config_file.write_text(GATEWAY_TOML)
    config = data_dir.load_config()
    metrics = Metrics()
    validator = ValidationPool(config.validation, data_dir.rules)
    gateway = Gateway(
        data_dir, config, identifier=Identifier(config.identify), validator=validator, metrics=metrics
    )
    gateway.closers.append(validator.close)
    server = MonitoringServer(
        config.metrics, gateway.store, metrics, gateway.health, collect_build_info(),
        rule_packs=rule_pack_versions(data_dir.rules),
    )  # fmt: skip
    gateway.extra_services.append(server)
    gateway.prepare()
    gateway.start()
    try:
        yield gateway, server
    finally:
        gateway.stop(timeout=30)


def test_promtool_check_metrics_on_a_running_gateway(running_gateway: tuple[Any, Any]) -> None:
    promtool()
    gateway, server = running_gateway
    inbox = gateway.data_dir.inbox(gateway.config, "acme")
    drops = {
        "empty.xml": b"",
        "notes.txt": b"this is not an invoice\n",
        "notes-again.txt": b"this is not an invoice\n",
    }
    for name, data in drops.items():
        (inbox / f".{name}.tmp").write_bytes(data)
        (inbox / f".{name}.tmp").replace(inbox / name)
    outbox = gateway.data_dir.outbox(gateway.config, "acme")
    deadline = time.monotonic() + 60

    def settled() -> bool:  # flows decided, and their acks written by the delivery workers (the outbox)
        written = gateway.metrics.registry.get_sample_value("gateway_acks_written_total", {"status": "Error"})
        return len(list_flows(gateway.store, state=FlowState.REJECTED)) == len(drops) and written == len(
            drops
        )

    while time.monotonic() < deadline and not settled():
        time.sleep(0.2)
    assert len(list_flows(gateway.store, state=FlowState.REJECTED)) == len(drops), list_flows(gateway.store)
    assert len(list(outbox.glob("*.xml"))) == len(drops)

    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        exposition = response.read()
    result = run_promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", "no lint warning either"

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition.decode())
        for s in family.samples
    }
    assert samples[("gateway_flows_received_total", (("partner", "acme"), ("source", "folder")))] == 3
    assert samples[("gateway_flows_completed_total", (("outcome", "error"), ("partner", "acme")))] == 3
    assert samples[("gateway_flows", (("state", "REJECTED"),))] == 3
    assert samples[("gateway_flows_rejected_total", (("reason", "IRR_VID_F"),))] == 1
    assert samples[("gateway_flows_rejected_total", (("reason", "AlreadyExistingFlow"),))] == 1
    assert samples[("gateway_flow_latency_seconds_count", ())] == 3
    assert samples[("gateway_store_up", ())] == 1
    assert samples[("gateway_oldest_pending_age_seconds", ())] == 0

    ready: dict = {}
    deadline = time.monotonic() + 120  # ready once the validation warm-up compiled the rule packs
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:
                ready = json.loads(response.read())
            break
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            ready = json.loads(exc.read())
            time.sleep(0.2)
    assert ready["status"] == "ready", ready
    assert (
        ready["components"]["database"]
        and ready["components"]["intake"]
        and ready["components"]["validation"]
    )
    with urllib.request.urlopen(f"{base}/api/stats?since=1h", timeout=10) as response:
        stats = json.loads(response.read())
    assert stats["flows"]["by_partner"]["acme"]["by_state"] == {"REJECTED": 3}
