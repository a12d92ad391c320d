"""Batch decoding: a read chunk of records into events, validated once per chunk.

:class:`BatchDecoder` gives exactly what :class:`~streamcl.events.EventDecoder` gives record
by record (the same events, the same rejections with the same reason and field), faster:

- JSON records are parsed and validated by one compiled msgspec schema (limits included),
  in C, without a Python object per JSON value;
- CSV rows of a chunk are split into columns, each column parsed in one pass and checked
  against the limits with numpy, then zipped back into per-event feature dicts;
- events are built without pydantic's per-call bookkeeping (:func:`make_event`).

Only events that are certainly valid take those paths. Whatever the fast path cannot vouch
for (any parse or validation failure, or a chunk of unusual shape) is decoded again by the
per-record :class:`~streamcl.events.EventDecoder`, which names the reason and the field, so
the two paths accept the same events and reject the rest identically. pydantic's
:class:`~streamcl.events.Event` stays the schema the API documents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import methodcaller
from typing import Annotated, Any

import msgspec
import numpy as np

from streamcl.connectors.base import Record
from streamcl.errors import DecodeError
from streamcl.events import MAX_ABS_LABEL, MAX_ABS_NUMBER, MAX_TS, MIN_TS, Event, EventDecoder

__all__ = ["BatchDecoder", "make_event"]

_new = object.__new__
_set = object.__setattr__
_strip_sign = methodcaller("lstrip", "+-")
#: Below this magnitude an int cell's float value decides the range check exactly.
_SAFE_INT = 1e29
#: Below this magnitude an int label's float value is certainly inside int64.
_SAFE_LABEL = 9e18


def make_event(event_id: str, ts: float | None, features: dict[str, Any], label: Any) -> Event:
    """An :class:`Event` from values already known to be valid (no validation).

    The same object ``Event.model_construct(id=..., ts=..., features=..., label=...)``
    builds, set attribute by attribute as pydantic does, without its per-field loop.
    """
    event = _new(Event)
    _set(event, "__dict__", {"id": event_id, "ts": ts, "features": features, "label": label})
    _set(event, "__pydantic_fields_set__", {"id", "ts", "features", "label"})
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def _json_schema(decoder: EventDecoder) -> msgspec.json.Decoder[Any]:
    """The compiled msgspec schema of a plainly valid event under ``decoder``'s limits."""
    text = Annotated[str, msgspec.Meta(max_length=decoder.max_string_length)]
    number = Annotated[float, msgspec.Meta(ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER)]
    label_int = Annotated[int, msgspec.Meta(ge=-MAX_ABS_LABEL, le=MAX_ABS_LABEL)]
    # int64 (msgspec's bound): well inside 1e30; larger ints go to the per-record path
    feature_int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
    label: Any = label_int | number if decoder.regression else label_int | text
    struct = msgspec.defstruct(
        "PlainEvent",
        [
            ("id", Annotated[str, msgspec.Meta(min_length=1, max_length=256)]),
            (
                "features",
                Annotated[
                    dict[text, bool | feature_int | number | text],
                    msgspec.Meta(max_length=decoder.max_features),
                ],
            ),
            ("ts", Annotated[float, msgspec.Meta(ge=MIN_TS, le=MAX_TS)] | None, None),
            ("label", label | None, None),
        ],
        forbid_unknown_fields=True,
        frozen=True,
    )
    return msgspec.json.Decoder(struct)


class BatchDecoder:
    """Decodes a chunk of records in one pass; equivalent to ``decoder`` record by record.

    Parameters
    ----------
    decoder
        The per-record decoder whose limits apply and which decodes (and names the problem
        of) every record the batch path does not accept.

    Examples
    --------
    >>> from streamcl.connectors.base import Record
    >>> batch = BatchDecoder(EventDecoder(target="y"))
    >>> out = batch.decode([Record(b'{"id": "a", "features": {"x": 1}}'), Record(b"[1]")])
    >>> out[0].features, out[1].reason
    ({'x': 1}, 'not_object')
    """

    def __init__(self, decoder: EventDecoder) -> None:
        self.decoder = decoder
        self._json = _json_schema(decoder)

    def decode(self, records: Sequence[Record]) -> list[Event | DecodeError]:
        """Decode ``records``: one event, or the rejection, per record (in order).

        Returns
        -------
        list[Event | DecodeError]
            Aligned with ``records``; a :class:`~streamcl.errors.DecodeError` carries the
            reason, field and detail :class:`~streamcl.events.EventDecoder` gives.
        """
        rows = [r.value for r in records if not isinstance(r.value, bytes)]
        if not rows:
            return self._decode_json(records)
        if len(rows) == len(records):
            return self._decode_rows(records)
        return [self._decode_one(r) for r in records]  # a mixed chunk: rare, record by record

    def _decode_one(self, record: Record) -> Event | DecodeError:
        try:
            if isinstance(record.value, bytes):
                return self.decoder.decode_json(record.value)
            return self.decoder.decode_row(record.value, record.offset)
        except DecodeError as exc:
            return exc

    def _decode_json(self, records: Sequence[Record]) -> list[Event | DecodeError]:
        limit, parse = self.decoder.max_payload_bytes, self._json.decode
        out: list[Event | DecodeError] = []
        for record in records:
            raw = record.value
            if isinstance(raw, bytes) and len(raw) <= limit:
                try:
                    e = parse(raw)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    pass
                else:
                    out.append(make_event(e.id, e.ts, e.features, e.label))
                    continue
            out.append(self._decode_one(record))
        return out

    def _decode_rows(self, records: Sequence[Record]) -> list[Event | DecodeError]:
        rows: list[Mapping[str, str]] = [r.value for r in records]  # type: ignore[misc]
        plain = self._plain_rows(rows, records)
        if plain is None:
            return [self._decode_one(r) for r in records]
        ids, features, labels, ok = plain
        return [
            make_event(ids[i], None, features[i], labels[i]) if ok[i] else self._decode_one(r)
            for i, r in enumerate(records)
        ]

    def _plain_rows(
        self, rows: list[Mapping[str, str]], records: Sequence[Record]
    ) -> tuple[list[str], list[dict[str, Any]], list[Any], np.ndarray] | None:
        """Columns of a chunk of CSV rows with the same columns, and which rows are valid.

        None when the chunk is not plain (rows with other columns, missing or extra cells,
        too many features): the caller then decodes it row by row.
        """
        d = self.decoder
        names = tuple(rows[0])
        if set(map(type, names)) - {str} or not all(map(names.__eq__, map(tuple, rows))):
            return None
        columns = {n: [r[n] for r in rows] for n in names}
        if any(set(map(type, col)) != {str} for col in columns.values()):
            return None
        n_rows = len(rows)
        ok = np.ones(n_rows, dtype=bool)
        label_cells = columns.pop(d.target) if d.target in columns else None
        id_cells = columns.pop(d.id_column) if d.id_column in columns else None
        if len(columns) > d.max_features or any(len(n) > d.max_string_length for n in columns):
            return None
        parsed = []
        for cells in columns.values():
            values, valid = self._column(cells)
            parsed.append(values)
            ok &= valid
        kept = list(columns)
        # every column has n_rows values; dict(zip(...)) per row runs in C
        features: list[dict[str, Any]] = list(
            map(dict, map(zip, repeat(kept), zip(*parsed, strict=True)))
        )
        if not kept:
            features = [{} for _ in range(n_rows)]
        if id_cells is None:
            ids = [str(r.offset) for r in records]
        else:
            ids = id_cells
            ok &= np.fromiter(map(len, ids), np.int64, n_rows) - 1 < 256
            ok &= np.fromiter(map(bool, ids), bool, n_rows)
        labels: list[Any] = [None] * n_rows
        if label_cells is not None:
            labels, valid = self._labels(label_cells)
            ok &= valid
        return ids, features, labels, ok

    def _column(self, cells: list[str]) -> tuple[list[Any], np.ndarray]:
        """One feature column parsed as :func:`~streamcl.events.parse_cell` does.

        Returns the values and which rows are plainly valid for this column (an empty cell
        or a value out of range leaves its row to the per-record path).
        """
        try:
            numbers = list(map(float, cells))
        except ValueError:
            return self._text_column(cells)
        x = np.array(numbers)
        valid = np.abs(x) <= MAX_ABS_NUMBER  # False for NaN
        whole = np.flatnonzero(np.floor(x) == x)  # only these can be written as integers
        if len(whole) == 0:
            return numbers, valid
        if len(whole) < len(cells):
            cells = [cells[i] for i in whole]
        digits = list(map(str.isdigit, map(_strip_sign, map(str.strip, cells))))
        if not any(digits):
            return numbers, valid
        valid[whole] &= np.abs(x[whole]) < _SAFE_INT
        if len(whole) == len(numbers) and all(digits):
            return list(map(int, cells)), valid
        for i, cell, digit in zip(whole, cells, digits, strict=True):
            if digit:
                numbers[i] = int(cell)
        return numbers, valid

    def _text_column(self, cells: list[str]) -> tuple[list[Any], np.ndarray]:
        """A column with text cells: every cell must be text (never a number) to be plain."""
        limit = self.decoder.max_string_length
        valid = np.ones(len(cells), dtype=bool)
        for i, c in enumerate(cells):
            if not c or len(c) > limit:
                valid[i] = False
            else:
                try:
                    float(c)
                    valid[i] = False  # a number among text: the row path decides
                except ValueError:
                    pass
        return cells, valid

    def _labels(self, cells: list[str]) -> tuple[list[Any], np.ndarray]:
        """The target column as :meth:`EventDecoder.decode_row` makes labels, and validity."""
        d = self.decoder
        values, valid = self._column(cells) if all(cells) else (list(cells), None)
        if valid is None:  # some rows without a label: leave the chunk's labels to the row path
            return values, np.zeros(len(cells), dtype=bool)
        kinds = set(map(type, values))
        if kinds == {int}:
            return values, valid & (np.abs(np.array(values, dtype=float)) < _SAFE_LABEL)
        if kinds == {float} and d.regression:
            return values, valid
        if kinds == {str} and not d.regression:
            return values, valid
        return values, np.zeros(len(cells), dtype=bool)
