"""The no-pickle, checksummed file format shared by checkpoints and model versions.

Layout::

    MAGIC (16 bytes) | MAC (32 bytes) | header length (8 bytes, big-endian) | header | tensors

``header`` is UTF-8 JSON holding all plain data; every tensor or numpy array in the state
is replaced there by a reference (``{"__tensor__": "t3"}``) into ``tensors``, a
``torch.save`` of a flat ``dict[str, Tensor]`` loaded back with ``weights_only=True``.
``MAC`` is SHA-256 (or HMAC-SHA256 when a signing key is configured) over everything after
it, so a torn, truncated or tampered file fails verification before anything is parsed, and
loading never unpickles an object: a file cannot run code.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from streamcl.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "TUNABLE_LEARNER",
    "drop_keys",
    "fingerprint_diff",
    "pack",
    "unpack",
]

MAGIC = b"STREAMCL-CKPT\x00v1"
FORMAT_VERSION = 1
_MAC_LEN = 32
_MARKERS = ("__tensor__", "__ndarray__", "__items__", "__tuple__")
#: numpy dtype kinds stored as tensors: bool, signed and unsigned int, float.
_ARRAY_KINDS = "biuf"


# -- encoding ----------------------------------------------------------------------------------
def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Plain JSON-able copy of ``obj`` with tensors and arrays moved into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().clone()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ARRAY_KINDS:
            raise CheckpointError(f"cannot checkpoint a numpy array of dtype {obj.dtype}")
        name = f"t{len(tensors)}"
        tensors[name] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj) and not any(m in obj for m in _MARKERS):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    raise CheckpointError(f"cannot checkpoint a value of type {type(obj).__name__}")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == "__tensor__":
            return tensors[value]
        if key == "__ndarray__":
            return tensors[value].numpy()
        if key == "__tuple__":
            return tuple(_decode(v, tensors) for v in value)
        if key == "__items__":
            return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in value}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _mac(payload: bytes, key: bytes | None) -> bytes:
    if key:
        return hmac.new(key, payload, hashlib.sha256).digest()
    return hashlib.sha256(payload).digest()


def pack(state: Mapping[str, Any], key: bytes | None = None) -> bytes:
    """Encode ``state`` (nested dicts/lists/tuples of plain data, tensors, numpy arrays).

    Raises
    ------
    CheckpointError
        A value is of a type that cannot be stored without pickle.
    """
    tensors: dict[str, torch.Tensor] = {}
    header = json.dumps(_encode(state, tensors), separators=(",", ":")).encode("utf-8")
    blob = io.BytesIO()
    torch.save(tensors, blob)
    payload = len(header).to_bytes(8, "big") + header + blob.getvalue()
    return MAGIC + _mac(payload, key) + payload


def unpack(data: bytes, key: bytes | None = None) -> dict[str, Any]:
    """Verify and decode what :func:`pack` wrote.

    Raises
    ------
    CheckpointError
        Wrong magic, checksum mismatch (torn, truncated or tampered file), or a payload
        that does not decode (including anything that would need unpickling).
    """
    if not data.startswith(MAGIC):
        raise CheckpointError("not a streamcl checkpoint (bad magic)")
    mac = data[len(MAGIC) : len(MAGIC) + _MAC_LEN]
    payload = data[len(MAGIC) + _MAC_LEN :]
    if len(mac) != _MAC_LEN or not hmac.compare_digest(mac, _mac(payload, key)):
        raise CheckpointError("checksum mismatch: the checkpoint is truncated, corrupt or tampered")
    n = int.from_bytes(payload[:8], "big")
    try:
        header = json.loads(payload[8 : 8 + n].decode("utf-8"))
        tensors = torch.load(io.BytesIO(payload[8 + n :]), weights_only=True, map_location="cpu")
    except Exception as exc:  # verified but undecodable: refuse, never unpickle
        raise CheckpointError(f"checkpoint payload does not decode: {exc}") from None
    if not isinstance(tensors, dict) or not all(
        isinstance(t, torch.Tensor) for t in tensors.values()
    ):
        raise CheckpointError("checkpoint tensor section is not a flat dict of tensors")
    state = _decode(header, tensors)
    if not isinstance(state, dict):
        raise CheckpointError("checkpoint header is not a mapping")
    return state


# -- settings fingerprints ---------------------------------------------------------------------
#: Learner settings (dotted below ``learner``) that may change between runs without
#: invalidating a checkpoint: step sizes, serving and drift-reaction knobs.
TUNABLE_LEARNER = frozenset(
    {
        "lr",
        "batch_size",
        "seed",
        "hedge_eta",
        "hedge_decay",
        "hedge_share",
        "calibration_lr",
        "memory.snapshot_every",
        "drift.actions",
        "drift.input_actions",
        "drift.lr_boost",
        "drift.lr_restart_steps",
        "drift.log_size",
        "max_live_models",
        "template",
        "standby",
        "tree_window",
        "tree_every",
    }
)


def drop_keys(tree: dict[str, Any], dotted: frozenset[str], prefix: str = "") -> dict[str, Any]:
    """``tree`` without the entries named by dotted paths in ``dotted``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if name in dotted:
            continue
        out[key] = drop_keys(value, dotted, f"{name}.") if isinstance(value, dict) else value
    return out


def fingerprint_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted names of the fingerprint entries that differ, e.g. ``["learner.hidden"]``."""
    out: list[str] = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [f"{key}.{k}" for k in fingerprint_diff(a, b)]
        elif _plain(a) != _plain(b):
            out.append(f"{key}: checkpoint {_plain(a)!r}, settings {_plain(b)!r}")
    return out


def _plain(x: Any) -> Any:
    return json.loads(json.dumps(x, default=list)) if x is not None else None
