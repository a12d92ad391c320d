"""Events: the schema, and decoding of raw records into validated events.

An event is ``{"id": str, "ts": float | None, "features": {name: number | string | bool},
"label": int | str | None}``. Decoding never raises anything but :class:`DecodeError`,
whose ``reason`` is a short metric label and whose ``field`` names the offending field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from streamcl.errors import DecodeError

__all__ = ["Event", "EventDecoder", "FeatureValue", "Label", "loads_strict", "parse_cell"]

FeatureValue = StrictBool | StrictInt | StrictFloat | StrictStr
#: A class label (int or str) or a regression target (a finite float or int).
Label = StrictInt | StrictFloat | StrictStr

#: Timestamps outside [MIN_TS, MAX_TS] (epoch seconds: 1970 .. 2100) are implausible.
MIN_TS, MAX_TS = 0.0, 4_102_444_800.0
#: Largest magnitude accepted for a number (finite in float32 after scaling).
MAX_ABS_NUMBER = 1e30
#: Largest magnitude of an integer label (int64).
MAX_ABS_LABEL = 2**63 - 1
#: Deepest nesting of JSON accepted before parsing (events are two levels deep).
MAX_JSON_DEPTH = 8


class Event(BaseModel):
    """One event of the stream.

    Attributes
    ----------
    id : str
        Unique event id (1..256 characters).
    ts : float or None
        Event time, epoch seconds, within 1970..2100.
    features : dict[str, bool | int | float | str]
        Feature values; numbers are finite and at most 1e30 in magnitude.
    label : int, str or None
        The target, or None when the label arrives later (or never).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: StrictStr = Field(min_length=1, max_length=256)
    ts: StrictFloat | StrictInt | None = None
    features: dict[StrictStr, FeatureValue]
    label: Label | None = None

    @field_validator("ts")
    @classmethod
    def _plausible_ts(cls, v: float | None) -> float | None:
        if v is not None and not (MIN_TS <= v <= MAX_TS):
            raise ValueError(f"timestamp {v} is outside 1970..2100 (epoch seconds)")
        return None if v is None else float(v)

    @field_validator("features")
    @classmethod
    def _finite_features(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, x in v.items():
            _check_feature(name, x)
        return v

    @field_validator("label")
    @classmethod
    def _label_range(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, int) and abs(v) > MAX_ABS_LABEL:
            raise ValueError("integer label does not fit in int64")
        if isinstance(v, float) and not _small(v):
            raise ValueError("label is not finite or above 1e30")
        return v


def _small(x: float) -> bool:
    try:
        return math.isfinite(x) and abs(x) <= MAX_ABS_NUMBER
    except OverflowError:
        return False


def parse_cell(text: str) -> bool | int | float | str:
    """A CSV cell as int, float or str (in that order of preference); ``""`` stays ``""``."""
    try:
        value = float(text)
    except ValueError:
        return text
    if value.is_integer() and text.strip().lstrip("+-").isdigit():
        return int(text)
    return value


def _reject_constant(name: str) -> float:
    raise DecodeError("non_finite", "", f"JSON constant {name} is not a finite number")


def _json_depth_ok(raw: str) -> bool:
    depth = 0
    in_str = escaped = False
    for ch in raw:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads_strict(raw: bytes | str, max_bytes: int) -> Any:
    """Parse JSON strictly: size-limited, UTF-8, bounded depth, finite numbers only.

    Raises
    ------
    DecodeError
        ``too_large``, ``bad_encoding``, ``too_deep``, ``bad_json`` or ``non_finite``.
    """
    if len(raw) > max_bytes:
        raise DecodeError("too_large", "", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise DecodeError("bad_encoding", "", f"not UTF-8: {exc.reason}") from None
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH and not _json_depth_ok(text):
        raise DecodeError("too_deep", "", f"JSON nested deeper than {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except DecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise DecodeError("bad_json", "", str(exc)[:200]) from None


class EventDecoder:
    """Turns raw records (JSON bytes or CSV rows) into :class:`Event`.

    Parameters
    ----------
    max_payload_bytes
        Largest encoded event accepted, bytes.
    max_features
        Most features in one event.
    max_string_length
        Longest string feature value or label, characters.
    target
        For CSV rows: the column holding the label (None: no label).
    id_column
        For CSV rows: the column holding the id (None: the row number).
    task
        ``"classification"``: a label is an int or a string (a class);
        ``"regression"``: a label is a number (the target).
    """

    def __init__(
        self,
        max_payload_bytes: int = 65_536,
        max_features: int = 1_024,
        max_string_length: int = 256,
        target: str | None = None,
        id_column: str | None = None,
        task: str = "classification",
    ) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.max_features = max_features
        self.max_string_length = max_string_length
        self.target = target
        self.id_column = id_column
        self.task = task
        self.regression = task == "regression"

    def decode_json(self, raw: bytes | str) -> Event:
        """Decode one JSON-encoded event.

        Raises
        ------
        DecodeError
            ``too_large``, ``bad_encoding`` (not UTF-8), ``too_deep``, ``bad_json``,
            ``non_finite`` (NaN, Infinity, 1e999), ``not_object`` and every reason of
            :meth:`validate`.
        """
        obj = loads_strict(raw, self.max_payload_bytes)
        if not isinstance(obj, dict):
            raise DecodeError("not_object", "", f"expected a JSON object, got {type(obj).__name__}")
        return self.validate(obj)

    def decode_row(self, row: Mapping[str, str], row_number: int) -> Event:
        """Turn a CSV row (column -> cell text) into an event.

        Columns become features (cells parsed by :func:`parse_cell`, empty cells dropped),
        ``target`` becomes the label, ``id_column`` (or the row number) the id.

        Raises
        ------
        DecodeError
            As :meth:`validate`, e.g. ``non_finite`` for a cell holding ``nan``;
            ``bad_row`` for a row with fewer or more cells than the header (``csv``'s
            ``DictReader`` gives missing cells as None and extra ones under the key None).
        """
        features: dict[str, Any] = {}
        label: Any = None
        event_id = str(row_number)
        if None in row or None in row.values():
            short = [str(n) for n, c in row.items() if c is None]
            detail = (
                f"row {row_number} has no cell for column(s) {', '.join(short)}"
                if short
                else f"row {row_number} has more cells than the header"
            )
            raise DecodeError("bad_row", short[0] if short else "", detail)
        for name, cell in row.items():
            if name == self.target:
                label = parse_cell(cell) if cell != "" else None
                if isinstance(label, float) and not self.regression:
                    label = int(label) if label.is_integer() else str(cell)
            elif name == self.id_column:
                event_id = cell
            elif cell != "" and name is not None:
                features[name] = parse_cell(cell)
        return self.validate({"id": event_id, "features": features, "label": label})

    def validate(self, obj: Mapping[str, Any]) -> Event:
        """Validate a mapping against the event schema and the size limits.

        Raises
        ------
        DecodeError
            ``missing_field``, ``extra_field``, ``bad_type``, ``non_finite``,
            ``bad_timestamp``, ``too_many_features``, ``too_long``.
        """
        if self._plainly_valid(obj):
            ts = obj.get("ts")
            return Event.model_construct(
                id=obj["id"],
                ts=None if ts is None else float(ts),
                features=dict(obj["features"]),
                label=obj.get("label"),
            )
        features = obj.get("features")
        if isinstance(features, dict):
            if len(features) > self.max_features:
                raise DecodeError(
                    "too_many_features", "features", f"{len(features)} > limit {self.max_features}"
                )
            for name, value in features.items():
                _check_feature(str(name), value)
        try:
            event = Event.model_validate(obj)
        except ValidationError as exc:
            raise _decode_error(exc) from None
        self._check_lengths(event)
        self._check_label_kind(event.label)
        return event

    def _check_label_kind(self, label: float | str | None) -> None:
        if self.regression and isinstance(label, str):
            raise DecodeError("bad_type", "label", "a regression target must be a number")
        if not self.regression and isinstance(label, float):
            raise DecodeError("bad_type", "label", "a class label must be an integer or a string")

    def _plainly_valid(self, obj: Mapping[str, Any]) -> bool:
        """Fast path: True only when ``obj`` is certainly a valid event.

        Anything else goes through pydantic, which finds and names the problem; the two
        paths accept exactly the same events.
        """
        limit = self.max_string_length
        if type(obj) is not dict or not obj.keys() <= _EVENT_KEYS:
            return False
        event_id, features = obj.get("id"), obj.get("features")
        if type(event_id) is not str or not 0 < len(event_id) <= 256:
            return False
        if type(features) is not dict or len(features) > self.max_features:
            return False
        ts, label = obj.get("ts"), obj.get("label")
        if ts is not None and (type(ts) not in (int, float) or not MIN_TS <= ts <= MAX_TS):
            return False
        if label is not None:
            kind = type(label)
            if kind is int:
                if abs(label) > MAX_ABS_LABEL:
                    return False
            elif kind is float:
                if not self.regression or not -MAX_ABS_NUMBER <= label <= MAX_ABS_NUMBER:
                    return False
            elif kind is not str or len(label) > limit or self.regression:
                return False
        for name, value in features.items():
            if type(name) is not str or len(name) > limit:
                return False
            kind = type(value)
            if kind is float or kind is int:
                if not -MAX_ABS_NUMBER <= value <= MAX_ABS_NUMBER:  # also False for NaN
                    return False
            elif kind is str:
                if len(value) > limit:
                    return False
            elif kind is not bool:
                return False
        return True

    def _check_lengths(self, event: Event) -> None:
        limit = self.max_string_length
        for name, value in event.features.items():
            if len(name) > limit or (isinstance(value, str) and len(value) > limit):
                raise DecodeError("too_long", f"features.{name[:64]}", f"longer than {limit} chars")
        if isinstance(event.label, str) and len(event.label) > limit:
            raise DecodeError("too_long", "label", f"longer than {limit} chars")


def _check_feature(name: str, value: object) -> None:
    field = f"features.{name[:64]}"
    if isinstance(value, (dict, list)):
        raise DecodeError("bad_type", field, "nested objects and arrays are not features")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _small(value):
        raise DecodeError("non_finite", field, f"{str(value)[:32]} is not finite or above 1e30")
    if not isinstance(value, (bool, int, float, str)):
        kind = "null" if value is None else type(value).__name__
        raise DecodeError("bad_type", field, f"{kind} is not a number, string or bool")


_EVENT_KEYS = frozenset({"id", "ts", "features", "label"})

_REASONS = {
    "missing": "missing_field",
    "extra_forbidden": "extra_field",
    "finite_number": "non_finite",
    "string_too_short": "empty",
}


def _decode_error(exc: ValidationError) -> DecodeError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    # Union members add their type name to the location ("features.x.str"); keep the field.
    if loc and loc[0] == "features":
        loc = loc[:2]
    elif loc:
        loc = loc[:1]
    field = ".".join(loc)
    reason = _REASONS.get(err["type"], "bad_type")
    msg = str(err["msg"])
    if field == "ts" and "outside" in msg:
        reason = "bad_timestamp"
    elif "not finite" in msg or "too large" in msg:
        reason = "non_finite"
    elif err["type"] == "string_too_long":
        reason = "too_long"
    return DecodeError(reason, field, msg)
