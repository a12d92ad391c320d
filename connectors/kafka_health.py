"""What kafka-python knows about a consumer's health, read defensively from its internals.

kafka-python does not raise when brokers go away or a group join stalls, so the source
reads the times of the last fetch and metadata refresh, the group coordinator's state and
the topic ids from the client's (private) fields, with ``getattr`` defaults throughout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["group_reason", "last_success", "topic_ids"]


def last_success(consumer: Any, *times: float) -> float:
    """Monotonic seconds of the newest fetch response or metadata refresh (or ``times``)."""
    out = list(times)
    if consumer is not None:  # kafka-python keeps these in monotonic ms (private fields)
        sensors = getattr(getattr(consumer, "_fetcher", None), "_sensors", None)
        latency = getattr(sensors, "fetch_latency", None)
        out.append(getattr(latency, "_last_record_time", 0.0) / 1000.0)
        cluster = getattr(consumer, "_cluster", None)
        out.append(getattr(cluster, "_last_successful_refresh_ms", 0.0) / 1000.0)
    return max(out)


def topic_ids(consumer: Any, topics: Sequence[str]) -> dict[str, str]:
    """Topic ids (uuid strings) of ``topics`` in the last metadata (unknown ones left out)."""
    cluster = getattr(getattr(consumer, "_client", None), "cluster", None)
    ids = {t: getattr(cluster, "topic_id", lambda _: None)(t) for t in topics}
    return {t: str(i) for t, i in ids.items() if i is not None and int(i) != 0}


def group_reason(
    consumer: Any, config: Mapping[str, Any], connected_at: float | None, error: str
) -> str:
    """Why a group member holds no partition yet: the coordinator, or its join state."""
    coordinator = getattr(consumer, "_coordinator", None)
    waited = time.monotonic() - (connected_at or time.monotonic())
    if coordinator is not None and getattr(coordinator, "coordinator_id", 0) is None:
        cause = "group coordinator not found"
    else:
        state = getattr(coordinator, "state", "unknown")
        cause = f"group join in progress, member {getattr(state, 'name', state)}".lower()
    detail = f"; last error: {error}" if error else ""
    return (
        f"no partitions assigned after {waited:.0f} s in group {config.get('group_id')!r} "
        f"({cause}{detail}; a join can take up to "
        f"session_timeout_ms={config.get('session_timeout_ms', 45000)})"
    )
