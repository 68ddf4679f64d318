"""Time expressions operators type: `24h`, `30m`, `7d`, `90s` ago, or an ISO 8601 date/time.

Shared by the command line and the monitoring API (neither imports the other).
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta


def parse_since(text: str) -> datetime:
    """`24h`, `30m`, `7d`, `90s` ago, or an ISO 8601 date/time (UTC if no offset)."""
    match = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    try:
        if match:
            unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
            return datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
        value = datetime.fromisoformat(text)
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        value.astimezone(UTC)  # an offset that leaves year 1..9999 would fail later, in a query
        return value
    except OverflowError:
        raise argparse.ArgumentTypeError(f"too far back: {text[:40]!r}") from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (24h, 30m, 7d) or ISO date: {text!r}") from None
