"""Gauges read from the database at scrape time, plus build and rule-pack information.

`StoreCollector` is registered on `Metrics.registry` by the monitoring server: each scrape of
/metrics reads the flow counts in one short read-only connection. A failing read never breaks the
scrape: the database gauges are left out and `gateway_store_up` is 0.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.statemachine import FlowState
from gateway.store.db import Store, utcnow
from gateway.store.queries import gauge_snapshot

BUILD_INFO_LABELS = ("version", "saxonche", "lxml", "factur_x", "python")

# name → help; every metric this collector can expose (tests check dashboards and alerts against it).
COLLECTOR_METRICS: dict[str, str] = {
    "gateway_flows": "Flows per state, read from the database at scrape time",
    "gateway_oldest_pending_age_seconds": (
        "Age (since reception) of the oldest flow still in a progress state or FAILED; 0 when none"
    ),
    "gateway_outbox_pending": (
        "Outbox rows (acknowledgements, deliveries…) waiting to be sent: state pending"
    ),
    "gateway_quarantined_flows": "Flows parked in QUARANTINED, waiting for an operator",
    "gateway_store_up": "1 if the last scrape could read the database, 0 if the read failed",
    "gateway_build_info": "Versions of the gateway and of the artefact libraries it runs with (value 1)",
    "gateway_rule_pack_info": "Validation rule packs available at start, by id and version (value 1)",
}


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def collect_build_info() -> dict[str, str]:
    """The `gateway_build_info` labels: gateway, Saxon-HE, lxml, factur-x and Python versions."""
    return {
        "version": _dist_version("flow-gateway"),
        "saxonche": _dist_version("saxonche"),
        "lxml": _dist_version("lxml"),
        "factur_x": _dist_version("factur-x"),
        "python": platform.python_version(),
    }


def rule_pack_versions(rules_dir: Path | None = None) -> list[tuple[str, str]]:
    """(pack id, version) of every builtin and installed rule pack; [] if they cannot be listed."""
    from gateway.validation.rulepacks import RulePackRegistry

    try:
        packs = RulePackRegistry(rules_dir).list()
    except Exception:  # noqa: BLE001 - information only: never stop the metrics server for it
        structlog.get_logger("gateway.metrics").warning("rule packs could not be listed", exc_info=True)
        return []
    return sorted({(p.id, p.version) for p in packs})


class StoreCollector(Collector):
    """Database gauges, build info and rule-pack info for one gateway."""

    def __init__(
        self,
        store: Store,
        build_info: Mapping[str, str],
        rule_packs: Iterable[tuple[str, str]] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.build_info = {label: str(build_info.get(label, "unknown")) for label in BUILD_INFO_LABELS}
        self.rule_packs = sorted(set(rule_packs))
        self.clock = clock
        self.log = structlog.get_logger("gateway.metrics")

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        m = COLLECTOR_METRICS
        return {
            "flows": GaugeMetricFamily("gateway_flows", m["gateway_flows"], labels=["state"]),
            "oldest": GaugeMetricFamily(
                "gateway_oldest_pending_age_seconds", m["gateway_oldest_pending_age_seconds"], unit="seconds"
            ),
            "outbox": GaugeMetricFamily("gateway_outbox_pending", m["gateway_outbox_pending"]),
            "quarantined": GaugeMetricFamily("gateway_quarantined_flows", m["gateway_quarantined_flows"]),
            "store_up": GaugeMetricFamily("gateway_store_up", m["gateway_store_up"]),
            "build": GaugeMetricFamily(
                "gateway_build_info", m["gateway_build_info"], labels=list(BUILD_INFO_LABELS)
            ),
            "packs": GaugeMetricFamily(
                "gateway_rule_pack_info", m["gateway_rule_pack_info"], labels=["pack", "version"]
            ),
        }

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets the registry detect name clashes without a DB read."""
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        build = families["build"]
        build.add_metric([self.build_info[label] for label in BUILD_INFO_LABELS], 1)
        yield build
        packs = families["packs"]
        for pack, version in self.rule_packs:
            packs.add_metric([pack, version], 1)
        yield packs
        store_up = families["store_up"]
        try:
            snapshot = gauge_snapshot(self.store, self.clock())
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database does not
            first_line = (str(exc).splitlines() or [""])[0]
            self.log.warning("metrics: database read failed", error=f"{type(exc).__name__}: {first_line}")
            store_up.add_metric([], 0)
            yield store_up
            return
        store_up.add_metric([], 1)
        yield store_up
        flows = families["flows"]
        for state in FlowState:
            flows.add_metric([state.value], snapshot["flows_by_state"][state.value])
        yield flows
        families["oldest"].add_metric([], snapshot["oldest_pending_age_seconds"])
        yield families["oldest"]
        families["outbox"].add_metric([], snapshot["outbox_pending"])
        yield families["outbox"]
        families["quarantined"].add_metric([], snapshot["quarantined"])
        yield families["quarantined"]
