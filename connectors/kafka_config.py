"""kafka-python client options built from settings, shared by the source and the sinks.

Plain dicts for ``KafkaConsumer(**...)`` / ``KafkaProducer(**...)``: connection and security
(:func:`client_config`, also used by ``streamcl produce``), plus the consumer's
(:func:`consumer_config`) and the producers' (:func:`producer_config`) own options. Nothing
here imports kafka-python or connects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamcl.settings import KafkaSettings

__all__ = ["client_config", "consumer_config", "producer_config"]


def client_config(k: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by consumers and producers (kafka-python names)."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in k.bootstrap_servers.split(",") if s.strip()],
        "client_id": k.client_id,
        "security_protocol": k.security_protocol,
        "request_timeout_ms": k.request_timeout_ms,
        "metadata_max_age_ms": k.metadata_max_age_ms,
        "reconnect_backoff_max_ms": 1_000,
    }
    if k.sasl_mechanism is not None:
        cfg["sasl_mechanism"] = k.sasl_mechanism
    if k.sasl_username is not None:
        cfg["sasl_plain_username"] = k.sasl_username
    if k.sasl_password is not None:
        cfg["sasl_plain_password"] = k.sasl_password.get_secret_value()
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(k, name) is not None:
            cfg[name] = getattr(k, name)
    return cfg


def consumer_config(k: KafkaSettings) -> dict[str, Any]:
    """kafka-python consumer options from settings: manual commits, raw bytes."""
    return {
        **client_config(k),
        "group_id": k.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": k.auto_offset_reset,
        "max_poll_records": k.max_poll_records,
        "fetch_max_wait_ms": k.fetch_max_wait_ms,
        "session_timeout_ms": k.session_timeout_ms,
        "heartbeat_interval_ms": k.heartbeat_interval_ms,
        "max_poll_interval_ms": k.max_poll_interval_ms,
        **({"group_instance_id": k.group_instance_id} if k.group_instance_id else {}),
        **_assignors(k.assignment),
    }


def _assignors(name: str) -> dict[str, Any]:
    """``partition_assignment_strategy`` of ``kafka.assignment`` (range: kafka-python's default)."""
    if name == "range":
        return {}
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

    return {"partition_assignment_strategy": (CooperativeStickyAssignor,)}


def producer_config(k: KafkaSettings) -> dict[str, Any]:
    """kafka-python producer options from settings (acks=all, small linger)."""
    return {
        **client_config(k),
        "acks": "all",
        "linger_ms": k.producer_linger_ms,
        "batch_size": 65_536,
        "max_request_size": k.producer_max_request_size,
        "max_block_ms": 5_000,
    }
