"""Composition root: reads the data dir's configuration and builds a ready-to-run Gateway."""

from __future__ import annotations

from pathlib import Path

from gateway.datadir import DataDir
from gateway.runtime.delivery import build_sinks
from gateway.runtime.supervisor import Gateway
from gateway.telemetry.logging import configure_logging
from gateway.telemetry.metrics import Metrics


def build_gateway(data_dir: DataDir) -> Gateway:
    from gateway.runtime.lifecycle_flow import delivered_hook
    from gateway.transforms.identify import Identifier
    from gateway.validation.pool import ValidationPool

    config = data_dir.load_config()
    log_file = None
    if config.log.file:
        log_file = Path(config.log.file)
        log_file = log_file if log_file.is_absolute() else data_dir.root / log_file
    configure_logging(config.log.level, config.log.format, log_file)
    metrics = Metrics()
    validator = ValidationPool(config.validation, data_dir.rules)
    # Outbox sinks by id: `partner:<id>` and every [sinks.<id>]; other doors register their prefix
    # (`webhook:`, `as2:`) on this resolver.
    sinks = build_sinks(data_dir, config)
    gateway = Gateway(
        data_dir,
        config,
        identifier=Identifier(config.identify),
        validator=validator,
        metrics=metrics,
        sinks=sinks,
        sent_hooks=[delivered_hook(config, metrics)],  # a delivered invoice becomes 203 (issue 18)
    )
    gateway.closers.append(validator.close)
    from gateway.api.webhooks import webhook_sink_factory

    # webhook:<id> rows (api area): signed HTTP POSTs to the partners' callback URLs
    sinks.register_prefix("webhook:", webhook_sink_factory(gateway.store, config.api.webhook_timeout_seconds))
    if config.metrics.enabled:
        from gateway.telemetry.collectors import collect_build_info, rule_pack_versions
        from gateway.telemetry.http import MonitoringServer

        # first to start, last to stop: ops can watch the drain
        monitoring = MonitoringServer(
            config.metrics,
            gateway.store,
            metrics,
            gateway.health,
            collect_build_info(),
            rule_packs=rule_pack_versions(data_dir.rules),
        )
        gateway.extra_services.insert(0, monitoring)
    if config.api.enabled:
        from gateway.api.server import ApiServer

        gateway.extra_services.append(
            ApiServer(
                config,
                gateway.store,
                gateway.intake,
                gateway.blobs,
                lambda partner: data_dir.outbox(config, partner),
                root=data_dir.root,
                extra={"data_dir": data_dir},
            )
        )
    from gateway.config import exposure_warnings

    for warning in exposure_warnings(config):
        gateway.log.warning("exposed listener", warning=warning)
    if config.sftp.enabled:
        from gateway.runtime.sftp_service import SftpService

        gateway.extra_services.append(
            SftpService(data_dir, config, gateway.upload_hint, metrics, store=gateway.store)
        )
    if config.as2.enabled:
        from gateway.as2.wiring import install_as2

        install_as2(gateway)  # the AS2 listener, the `as2:` sink and acknowledgements by AS2
    return gateway


def drop_demo_files(inbox: Path | None) -> list[Path]:
    """Drop a few sample flows (valid UBL, valid CII, an invalid invoice, a flat-file batch, garbage)."""
    from gateway.samples import demo_flows

    if inbox is None:
        return []
    inbox.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in demo_flows():
        tmp = inbox / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(inbox / name)
        paths.append(inbox / name)
    return paths
