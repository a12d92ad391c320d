"""The source contract, on the file source (CSV, CSV.gz, JSONL) and the test list source."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sources import ListSource, elec2_rows, write_csv
from streamcl.connectors.base import Source
from streamcl.connectors.files import FileSource, resolve_path


@pytest.fixture(params=["csv", "csv.gz", "jsonl", "jsonl.gz"])
def data_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    rows = elec2_rows(50)
    kind = request.param
    if kind.startswith("csv"):
        path = write_csv(tmp_path / "d.csv", rows)
    else:
        path = tmp_path / "d.jsonl"
        path.write_text(
            "".join(
                json.dumps({"id": str(i), "features": {"x": float(r["nswprice"])}}) + "\n"
                for i, r in enumerate(rows)
            )
        )
    if kind.endswith(".gz"):
        gz = path.with_suffix(path.suffix + ".gz")
        gz.write_bytes(gzip.compress(path.read_bytes()))
        return gz
    return path


def test_file_source_satisfies_the_contract(data_file: Path) -> None:
    src = FileSource(str(data_file))
    assert isinstance(src, Source)
    first = src.read(20)
    assert [r.offset for r in first] == list(range(20))
    assert src.position() == {"file": 20}
    rest = src.read(100)
    assert len(rest) == 30 and src.exhausted
    assert src.read(10) == []
    src.seek({"file": 20})
    again = src.read(100)
    assert [r.value for r in again] == [r.value for r in rest]
    assert [r.offset for r in again] == [r.offset for r in rest]
    src.close()


def test_position_is_the_next_record_to_read(data_file: Path) -> None:
    src = FileSource(str(data_file))
    src.read(7)
    pos = src.position()
    resumed = FileSource(str(data_file))
    resumed.seek(pos)
    assert resumed.read(1)[0].offset == 7


def test_looping_source_never_ends_and_offsets_stay_unique(data_file: Path) -> None:
    src = FileSource(str(data_file), loop=True)
    records = src.read(120)
    assert len(records) == 120 and not src.exhausted
    assert [r.offset for r in records] == list(range(120))
    assert records[50].value == records[0].value


def test_rate_limit_paces_the_replay(data_file: Path) -> None:
    src = FileSource(str(data_file), rate=200.0)
    started = time.monotonic()
    got = 0
    while got < 40:
        got += len(src.read(10, timeout_s=0.05))
    assert time.monotonic() - started >= 0.15  # 40 events at 200/s take about 0.2 s


def test_builtin_elec2_resolves_to_the_packaged_file() -> None:
    path = resolve_path("builtin://elec2")
    assert path.is_file()
    src = FileSource("builtin://elec2")
    row = src.read(1)[0].value
    assert isinstance(row, dict) and set(row) >= {"nswprice", "class"}


def test_missing_or_unsupported_files_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileSource(str(tmp_path / "nope.csv"))
    with pytest.raises(FileNotFoundError):
        resolve_path("builtin://nope")
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported"):
        FileSource(str(bad))


def test_list_source_satisfies_the_contract() -> None:
    src = ListSource([{"id": "1", "features": {}}] * 3)
    assert isinstance(src, Source)
    assert len(src.read(2)) == 2 and src.position() == {"list:0": 2}
    src.seek({"list:0": 0})
    assert len(src.read(5)) == 3 and src.exhausted


_CELLS = st.text(alphabet='ab,"\n 1', max_size=4)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(_CELLS, max_size=3),
    rows=st.lists(st.lists(_CELLS, max_size=4), max_size=6),
    chunk=st.integers(1, 4),
)
def test_csv_rows_are_read_as_dictreader_reads_them(
    tmp_path: Path, header: list[str], rows: list[list[str]], chunk: int
) -> None:
    # short, long, empty and quoted rows, read in chunks of any size
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path / "h.csv"
    path.write_text(text.getvalue(), newline="")
    with path.open(newline="") as fh:
        expected = list(csv.DictReader(fh))
    source = FileSource(str(path))
    got: list[Any] = []
    while not source.exhausted:
        got += source.read(chunk)
    assert [r.value for r in got] == expected
    assert [r.offset for r in got] == list(range(len(expected)))
    source.close()


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_blank_jsonl_lines_are_skipped_and_not_counted(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"id": "a"}\n\n  \n{"id": "b"}\n\n{"id": "c"}\n\n')
    source = FileSource(str(path))
    got: list[Any] = []
    while not source.exhausted:
        got += source.read(chunk)
    assert [(r.value, r.offset) for r in got] == [
        (b'{"id": "a"}\n', 0),
        (b'{"id": "b"}\n', 1),
        (b'{"id": "c"}\n', 2),
    ]
    assert source.position() == {"file": 3}
