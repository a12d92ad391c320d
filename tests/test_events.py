"""Event schema and decoding: every rejection reason, named by field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streamcl.errors import DecodeError
from streamcl.events import Event, EventDecoder, _check_feature, parse_cell


@pytest.fixture()
def decoder() -> EventDecoder:
    return EventDecoder(max_payload_bytes=2_000, max_features=4, max_string_length=16, target="y")


def test_valid_event_round_trips(decoder: EventDecoder) -> None:
    raw = {
        "id": "e1",
        "ts": 1_700_000_000.5,
        "features": {"a": 1.5, "b": "x", "c": True},
        "label": 1,
    }
    event = decoder.decode_json(json.dumps(raw).encode())
    assert event.id == "e1"
    assert event.ts == 1_700_000_000.5
    assert event.features == {"a": 1.5, "b": "x", "c": True}
    assert event.label == 1


def test_label_is_optional_and_may_be_a_string(decoder: EventDecoder) -> None:
    assert decoder.decode_json(b'{"id": "1", "features": {}}').label is None
    assert decoder.decode_json(b'{"id": "1", "features": {}, "label": "UP"}').label == "UP"


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"x" * 2_001, "too_large", ""),
        (b"\xff\xfe{}", "bad_encoding", ""),
        (b'{"id": "1", "features": {', "bad_json", ""),
        (b"[" * 50 + b"]" * 50, "too_deep", ""),
        (b'{"id": "1", "features": {"a": NaN}}', "non_finite", ""),
        (b'{"id": "1", "features": {"a": Infinity}}', "non_finite", ""),
        (b'{"id": "1", "features": {"a": 1e999}}', "non_finite", "features.a"),
        (b'{"id": "1", "features": {"a": 1' + b"0" * 40 + b"}}", "non_finite", "features.a"),
        (b"[1, 2]", "not_object", ""),
        (b'"text"', "not_object", ""),
        (b'{"features": {}}', "missing_field", "id"),
        (b'{"id": "1"}', "missing_field", "features"),
        (b'{"id": "1", "features": {}, "extra": 1}', "extra_field", "extra"),
        (b'{"id": 7, "features": {}}', "bad_type", "id"),
        (b'{"id": "1", "features": {"a": {"b": 1}}}', "bad_type", "features.a"),
        (b'{"id": "1", "features": {"a": [1]}}', "bad_type", "features.a"),
        (b'{"id": "1", "features": {"a": null}}', "bad_type", "features.a"),
        (b'{"id": "1", "features": {}, "label": 1.5}', "bad_type", "label"),
        (b'{"id": "1", "features": {}, "label": [1]}', "bad_type", "label"),
        (b'{"id": "1", "features": {}, "label": 99999999999999999999}', "bad_type", "label"),
        (b'{"id": "1", "ts": -1, "features": {}}', "bad_timestamp", "ts"),
        (b'{"id": "1", "ts": 1e12, "features": {}}', "bad_timestamp", "ts"),
        (b'{"id": "1", "ts": "now", "features": {}}', "bad_type", "ts"),
        (
            b'{"id": "1", "features": {"a":1,"b":2,"c":3,"d":4,"e":5}}',
            "too_many_features",
            "features",
        ),
        (b'{"id": "1", "features": {"a": "' + b"s" * 17 + b'"}}', "too_long", "features.a"),
        (b'{"id": "", "features": {}}', "empty", "id"),
        (b'{"id": "' + b"i" * 300 + b'", "features": {}}', "too_long", "id"),
    ],
)
def test_rejections_name_reason_and_field(
    decoder: EventDecoder, raw: bytes, reason: str, field: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decoder.decode_json(raw)
    assert info.value.reason == reason
    assert info.value.field == field
    assert info.value.detail


def test_csv_row_becomes_event(decoder: EventDecoder) -> None:
    event = decoder.decode_row({"a": "0.5", "b": "red", "n": "3", "y": "1", "empty": ""}, 41)
    assert event.id == "41"
    assert event.features == {"a": 0.5, "b": "red", "n": 3}
    assert event.label == 1


def test_csv_row_with_id_column_and_string_label() -> None:
    d = EventDecoder(target="cls", id_column="key")
    event = d.decode_row({"key": "k9", "x": "1", "cls": "UP"}, 0)
    assert (event.id, event.label, event.features) == ("k9", "UP", {"x": 1})


def test_csv_nan_cell_is_rejected(decoder: EventDecoder) -> None:
    with pytest.raises(DecodeError) as info:
        decoder.decode_row({"a": "nan", "y": "0"}, 0)
    assert (info.value.reason, info.value.field) == ("non_finite", "features.a")


def test_csv_rows_with_missing_or_extra_cells_are_rejected_by_name(
    decoder: EventDecoder, tmp_path: Any
) -> None:
    with pytest.raises(DecodeError) as info:  # csv.DictReader gives a missing cell as None
        decoder.decode_row({"a": "1", "b": None, "y": None}, 7)  # type: ignore[dict-item]
    assert (info.value.reason, info.value.field) == ("bad_row", "b")
    assert "row 7" in info.value.detail and "b, y" in info.value.detail
    with pytest.raises(DecodeError) as info:  # ... and extra cells under the key None
        decoder.decode_row({"a": "1", "y": "0", None: ["9"]}, 8)  # type: ignore[dict-item]
    assert info.value.reason == "bad_row" and "more cells" in info.value.detail


def test_a_file_with_ragged_rows_learns_every_other_row(tmp_path: Any) -> None:
    from streamcl.replay import replay
    from streamcl.settings import load_settings

    path = tmp_path / "ragged.csv"
    rows = [f"{i % 7},{i % 3},{i % 2}" for i in range(200)]
    rows[50], rows[120] = "3", "1,2,0,9"  # a short row and a long one
    path.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    settings = load_settings(None, source={"kind": "file", "path": str(path), "target": "y"})
    summary = replay(settings)
    assert (summary["events"], summary["rejected"]) == (198, 2)


def test_parse_cell_prefers_int_then_float_then_text() -> None:
    assert parse_cell("3") == 3 and isinstance(parse_cell("3"), int)
    assert parse_cell("3.5") == 3.5
    assert parse_cell("x") == "x"


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_objects = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=20), _values),
        "ts": st.one_of(st.floats(0, 5e9), _values),
        "features": st.one_of(st.dictionaries(st.text(max_size=20), _values, max_size=6), _values),
        "label": st.one_of(st.integers(), st.text(max_size=20), _values),
        "extra": _values,
    },
)


@settings(max_examples=400, deadline=None)
@given(_objects)
def test_fast_path_accepts_exactly_what_the_schema_accepts(obj: dict[str, Any]) -> None:
    decoder = EventDecoder(max_string_length=16)
    fast = decoder._plainly_valid(obj)
    try:
        slow: Event | None = Event.model_validate(obj)
        decoder._check_lengths(slow)
        for name, value in obj["features"].items():
            _check_feature(name, value)
    except (ValidationError, DecodeError):
        slow = None
    if fast:
        assert slow is not None
        assert decoder.validate(obj) == slow
    else:
        with pytest.raises(DecodeError):
            decoder.validate(obj)
