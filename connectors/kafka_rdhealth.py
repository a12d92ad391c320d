"""What librdkafka tells about a consumer's health, and the topic ids of its topics.

For :class:`~streamcl.connectors.kafka_rdsource.RdKafkaSource`: :class:`RdStats` reads the
statistics librdkafka emits every ``statistics.interval.ms`` (served by ``consume()``), for
the watchdog (the newest receive on a broker connection that is UP), the group lease (the
newest receive on the group coordinator connection: heartbeats) and the join state;
:class:`TopicIds` asks an admin client for topic ids (a recreated topic has a new one)
without blocking the loop, unless asked to wait.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["RdStats", "TopicIds"]

log = logging.getLogger(__name__)

_ADMIN_KEYS = ("bootstrap.", "client.", "security.", "sasl.", "ssl.", "socket.", "reconnect.")


class RdStats:
    """Times of the last broker and coordinator receives, from librdkafka's statistics.

    Attributes
    ----------
    last_ok : float
        Monotonic seconds of the newest receive on a broker connection (fetch responses,
        metadata); 0 before any.
    last_coordinator : float
        Monotonic seconds of the newest receive on the group coordinator connection
        (heartbeat responses, joins); 0 before any.
    join_state : str
        The group's state and join state, e.g. ``"up, join steady"``.
    """

    def __init__(self) -> None:
        self.last_ok = 0.0
        self.last_coordinator = 0.0
        self.join_state = "not joined"

    def update(self, raw: str) -> None:
        """Read one statistics JSON document (librdkafka's ``stats_cb`` argument); never raises."""
        try:
            self._update(json.loads(raw))
        except Exception as exc:  # a raising callback would surface from consume()
            log.debug("unreadable librdkafka statistics: %s", exc)

    def _update(self, stats: dict[str, Any]) -> None:
        for b in stats.get("brokers", {}).values():
            rx = b.get("rxidle", -1)
            if b.get("state") != "UP" or rx < 0:
                continue
            # "ts" is librdkafka's monotonic clock (CLOCK_MONOTONIC, microseconds), as Python's
            at = (stats["ts"] - rx) / 1e6
            if b.get("nodeid", -1) >= 0:
                self.last_ok = max(self.last_ok, at)
            elif str(b.get("name", "")).startswith("GroupCoordinator"):
                self.last_coordinator = max(self.last_coordinator, at)
        cgrp = stats.get("cgrp", {})
        self.join_state = f"{cgrp.get('state', 'unknown')}, join {cgrp.get('join_state', '?')}"


class TopicIds:
    """Topic ids (uuid strings) of ``topics`` through a lazily built ``AdminClient``.

    Parameters
    ----------
    topics
        Topic names.
    config
        librdkafka options; only the connection and security ones are used.
    interval_s
        :meth:`poll` asks at most this often.
    """

    def __init__(self, topics: Sequence[str], config: Mapping[str, Any], interval_s: float) -> None:
        self.topics = list(topics)
        self.config: dict[str, Any] = {
            k: v for k, v in config.items() if str(k).startswith(_ADMIN_KEYS)
        }
        self.interval_s = interval_s
        self._admin: Any = None
        self._pending: dict[str, Any] = {}
        self._asked = -float("inf")

    def poll(self, wait: bool) -> dict[str, str] | None:
        """The ids known now, or None when no answer is ready (or the question failed).

        ``wait``: ask now and wait up to 5 s for the answer. Otherwise ask when
        ``interval_s`` has passed since the last question, and return its answer on a
        later call, once it has come. Topics the broker does not know are left out.
        """
        if not wait and not self._pending and time.monotonic() - self._asked < self.interval_s:
            return None
        try:
            if self._admin is None:
                from confluent_kafka.admin import AdminClient

                self._admin = AdminClient(self.config, logger=log)
            if not self._pending:
                from confluent_kafka import TopicCollection

                self._asked = time.monotonic()
                self._pending = self._admin.describe_topics(TopicCollection(self.topics))
            if not wait and not all(f.done() for f in self._pending.values()):
                return None
        except Exception as exc:  # no broker, bad config: nothing known
            self._pending = {}
            log.debug("no topic ids: %s", exc)
            return None
        pending, self._pending = self._pending, {}
        ids = {}
        for topic, future in pending.items():
            try:
                ids[topic] = str(future.result(timeout=5.0).topic_id)
            except Exception as exc:  # unknown topic, timeout: left out
                log.debug("no topic id for %s: %s", topic, exc)
        return {t: i for t, i in ids.items() if i and set(i) != {"A"}}  # all-zero uuid: none

    def close(self) -> None:
        """Drop the admin client (its connections close with it); the next poll rebuilds it."""
        self._admin, self._pending = None, {}
