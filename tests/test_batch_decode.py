"""Batch decoding gives the same events and the same rejections as record-by-record decoding."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sources import elec2_rows
from streamcl.connectors.base import Record

from streamcl.errors import DecodeError
from streamcl.events import Event, EventDecoder
from streamcl.models.schema import kind_of
from streamcl.service import Service
from streamcl.settings import load_settings
from streamcl.stream.decode import BatchDecoder, make_event


def _typed(value: Any) -> Any:
    """A value with the type of every scalar made visible (1, 1.0 and True all differ)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    return (type(value).__name__, value)


def _outcome(result: Event | DecodeError) -> tuple[Any, ...]:
    if isinstance(result, DecodeError):
        return ("rejected", result.reason, result.field, result.detail)
    fields = (result.__pydantic_fields_set__, result.__pydantic_extra__)
    return ("event", _typed(result.model_dump()), list(result.features), fields)


def _one_by_one(decoder: EventDecoder, records: list[Record]) -> list[tuple[Any, ...]]:
    out = []
    for r in records:
        try:
            if isinstance(r.value, bytes):
                out.append(_outcome(decoder.decode_json(r.value)))
            else:
                out.append(_outcome(decoder.decode_row(r.value, r.offset)))
        except DecodeError as exc:
            out.append(_outcome(exc))
    return out


def _assert_same(decoder: EventDecoder, records: list[Record]) -> None:
    batch = [_outcome(x) for x in BatchDecoder(decoder).decode(records)]
    assert batch == _one_by_one(decoder, records)


#: Values at the limits: int64, the largest accepted magnitude (1e30 as a float), ids.
_EDGES = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30, int(1e30), int(1e30) + 1, 1e30]
_SCALAR = (
    st.sampled_from(_EDGES)
    | st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e31, max_value=1e31)
    | st.text(max_size=20)
)
_JSON = st.recursive(
    _SCALAR,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=12,
)
_FEATURES = st.dictionaries(st.text(max_size=20), _SCALAR, max_size=6)
_EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=20) | st.sampled_from([255, 256, 257]).map("i".__mul__) | _SCALAR,
        "ts": st.floats(-10, 5e9) | st.integers(-10, 5_000_000_000) | _SCALAR,
        "features": _FEATURES | _JSON,
        "label": st.integers() | st.text(max_size=20) | st.floats() | _SCALAR,
        "extra": _SCALAR,
    },
)


_VALUE = (
    st.sampled_from(_EDGES) | st.booleans() | st.integers() | st.floats() | st.text(max_size=14)
)
#: Mostly valid events (each field near its limits), so the fast path is taken and checked.
_PLAIN = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=8) | st.sampled_from([256, 257]).map("i".__mul__),
        "features": st.dictionaries(st.text(max_size=14), _VALUE, max_size=5),
    },
    optional={
        "ts": st.floats(-1, 5e9) | st.integers(0, 5_000_000_000) | st.none(),
        "label": _VALUE | st.none(),
    },
)


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["plain", "plain", "event", "json", "bytes", "mangled"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    value = draw({"plain": _PLAIN, "json": _JSON}.get(kind, _EVENTS))
    text = json.dumps(value, allow_nan=True, ensure_ascii=draw(st.booleans()))
    if kind == "mangled":  # duplicate keys, lone surrogates, cut text, odd spacing
        edit = draw(st.sampled_from(["dup", "surrogate", "cut", "space", "bom"]))
        if edit == "dup" and text.startswith("{") and len(text) > 2:
            text = '{"id": "dup", ' + text[1:]
        elif edit == "surrogate":
            text = text.replace('"', '"\\ud800', 1)
        elif edit == "cut":
            text = text[: draw(st.integers(0, len(text)))]
        elif edit == "space":
            text = f" \n{text}\t "
        else:
            text = "\ufeff" + text
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_payloads(), min_size=1, max_size=8),
    st.sampled_from(["classification", "regression"]),
)
def test_json_chunks_decode_as_record_by_record(payloads: list[bytes], task: str) -> None:
    decoder = EventDecoder(max_payload_bytes=400, max_features=4, max_string_length=12, task=task)
    records = [Record(p, offset=i) for i, p in enumerate(payloads)]
    _assert_same(decoder, records)


_CELL = st.one_of(
    st.sampled_from(["", " ", "0", "1", "-1", "+7", " 12 ", "1.0", "1e3", "1_000", "007"]),
    st.sampled_from(["nan", "inf", "-Infinity", "1e400", "9" * 40, "1" + "0" * 30, "UP", "٣"]),
    st.sampled_from(_EDGES).map(str),
    st.integers().map(str),
    st.floats(allow_nan=False).map(repr),
    st.text(max_size=14),
)
_NAMES = st.lists(st.sampled_from(["a", "b", "c", "y", "key", "a_very_long_column"]), max_size=6)
_IDS = st.sampled_from(["", "k", "k" * 256, "k" * 257])


@st.composite
def _row_chunks(draw: st.DrawFn) -> list[dict[str, str]]:
    names = draw(_NAMES.map(lambda ns: list(dict.fromkeys(ns))))
    n = draw(st.integers(1, 6))
    constant = {name: draw(_CELL) for name in names}  # columns that keep one kind
    rows = []
    for _ in range(n):
        row = {n: draw(_CELL) if draw(st.integers(0, 3)) == 0 else constant[n] for n in names}
        if "key" in row and draw(st.booleans()):
            row["key"] = draw(_IDS)
        if draw(st.integers(0, 9)) == 0:  # now and then a row with other columns
            row = {**row, draw(st.sampled_from(["z", "a"])): draw(_CELL)}
        rows.append(row)
    return rows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _row_chunks(),
    st.sampled_from(["classification", "regression"]),
    st.sampled_from([None, "key", "y"]),
)
def test_csv_chunks_decode_as_row_by_row(
    rows: list[dict[str, str]], task: str, id_column: str | None
) -> None:
    decoder = EventDecoder(
        max_features=3, max_string_length=8, target="y", id_column=id_column, task=task
    )
    records = [Record(row, offset=40 + i) for i, row in enumerate(rows)]
    _assert_same(decoder, records)


def test_elec2_rows_decode_as_row_by_row() -> None:
    records = [Record(row, offset=i) for i, row in enumerate(elec2_rows(600))]
    _assert_same(EventDecoder(target="class"), records)
    events = BatchDecoder(EventDecoder(target="class")).decode(records)
    assert all(isinstance(e, Event) for e in events)


def test_a_mixed_chunk_of_json_and_rows_decodes_record_by_record() -> None:
    records = [
        Record(b'{"id": "j", "features": {"x": 1.5}, "label": 2}'),
        Record({"x": "0.5", "y": "1"}, offset=3),
        Record(b'{"id": "k", "features": {"x": NaN}}'),
    ]
    _assert_same(EventDecoder(target="y"), records)


def test_make_event_is_the_event_model_construct_builds() -> None:
    features = {"x": 1, "c": "red"}
    built = make_event("e", 1.5, dict(features), "UP")
    constructed = Event.model_construct(id="e", ts=1.5, features=dict(features), label="UP")
    assert built == constructed
    assert built.model_fields_set == constructed.model_fields_set
    assert built.model_dump() == constructed.model_dump()
    assert Event.model_validate(built.model_dump()) == built


def _check_kinds_reference(known: dict[str, str], event: Event, pending: dict[str, str]) -> None:
    """The loop's kind check as it was before its one-pass fast path."""
    for name, value in event.features.items():
        kind = kind_of(value)
        if known.get(name, kind) != kind:
            raise DecodeError("type_mismatch", f"features.{name}", f"expected a {known[name]}")
    for name, value in event.features.items():
        if name not in known:
            kind = kind_of(value)
            if pending.setdefault(f"features.{name}", kind) != kind:
                raise DecodeError("type_mismatch", f"features.{name}", f"expected a {kind}")


_KIND_FEATURES = st.dictionaries(
    st.sampled_from("abcd"), st.integers(0, 3) | st.sampled_from(["s", "t"]), max_size=4
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcd"), st.sampled_from(["number", "category"])),
    st.lists(_KIND_FEATURES, min_size=1, max_size=5),
)
def test_the_loop_kind_check_rejects_as_before(
    known: dict[str, str], chunk: list[dict[str, Any]]
) -> None:
    service = Service(load_settings(source={"kind": "none"}))
    service.loop.learner.featurizer.kinds.update(known)
    ours: dict[str, str] = {}
    theirs: dict[str, str] = {}
    for i, features in enumerate(chunk):
        event = Event(id=str(i), features=features)
        outcome = []
        for check, pending in (
            (service.loop.check_kinds, ours),
            (lambda e, p: _check_kinds_reference(known, e, p), theirs),
        ):
            try:
                check(event, pending)
                outcome.append(None)
            except DecodeError as exc:
                outcome.append((exc.reason, exc.field))
        assert outcome[0] == outcome[1]
        assert ours == theirs
