"""Wiring AS2 into a Gateway (called by the composition root when `[as2] enabled = true`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Connection

from gateway.as2.receiver import As2Receiver
from gateway.as2.service import As2Service
from gateway.as2.sink import As2Sink
from gateway.as2.station import As2Station
from gateway.outbound.base import Sink, UnknownSinkError
from gateway.store.models import FlowRow
from gateway.store.outbox import enqueue

if TYPE_CHECKING:
    from gateway.runtime.supervisor import Gateway
    from gateway.transforms.ack_build import FlowVerdict


def install_as2(gateway: Gateway) -> As2Service:
    """The listener (an extra service), the `as2:` sink prefix, and the acknowledgement hook."""
    config = gateway.config
    station = As2Station(config.as2, config, gateway.data_dir.root)
    receiver = As2Receiver(station, gateway.intake, gateway.store, gateway.metrics)
    service = As2Service(receiver, config.as2)

    def as2_sink(partner: str) -> Sink:
        entry = station.by_partner.get(partner)
        if entry is None:
            raise UnknownSinkError(f"partner {partner!r} has no [partners.{partner}.as2] section")
        return As2Sink(station, entry, config.as2.mdn_timeout_seconds)

    gateway.sinks.register_prefix("as2:", as2_sink)

    def ack_by_as2(conn: Connection, verdict: FlowVerdict, name: str, xml: bytes) -> None:
        """`deliver_acks`: the acknowledgement of a flow received by AS2 also goes back by AS2."""
        entry = station.by_partner.get(verdict.partner)
        if entry is None or not entry.config.deliver_acks:
            return
        source = conn.execute(select(FlowRow.source).where(FlowRow.id == verdict.flow_id)).scalar()
        if source != "as2":
            return
        enqueue(conn, kind="ack", sink=f"as2:{verdict.partner}", remote_name=name, payload=xml,
                flow_id=verdict.flow_id, meta={"status": verdict.status, "copy": True, "as2": True})  # fmt: skip

    gateway.pipeline.ack_hooks.append(ack_by_as2)
    gateway.extra_services.append(service)
    return service
