import json

import pytest

from aimc_lsh.studies.grid import point_key
from aimc_lsh.studies.journal import Journal, JournalError, PointRecord, materialise_rows


def _record(a, rows=None):
    params = {"a": a}
    return PointRecord(key=point_key(params), params=params, rows=rows or [{"v": a * 1.5}], seconds=0.1)


def test_append_read_and_no_duplicates(tmp_path):
    path = tmp_path / "s.journal.jsonl"
    with Journal(path) as journal:
        assert journal.open() == {}
        assert journal.append(_record(1))
        assert not journal.append(_record(1))  # same key: not written twice
        assert journal.append(_record(2))
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    records = Journal(path).read()
    assert [r.params["a"] for r in records.values()] == [1, 2]
    assert records[point_key({"a": 2})].rows == [{"v": 3.0}]


def test_floats_round_trip_exactly(tmp_path):
    value = 0.1 + 0.2  # not representable in short decimal
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.open()
        journal.append(_record(1, rows=[{"v": value}]))
    assert Journal(tmp_path / "j.jsonl").read()[point_key({"a": 1})].rows[0]["v"] == value


def test_torn_tail_is_dropped_and_cut_before_appending(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.open()
        journal.append(_record(1))
    good = path.read_bytes()
    torn = _record(2).to_line()[:-7]  # killed in the middle of a write: no newline
    path.write_bytes(good + torn)
    assert list(Journal(path).read()) == [point_key({"a": 1})]
    with Journal(path) as journal:
        records = journal.open()
        assert list(records) == [point_key({"a": 1})]
        assert path.read_bytes() == good  # the torn bytes are gone
        journal.append(_record(2))
    assert len(Journal(path).read()) == 2


def test_row_key_order_survives_the_round_trip(tmp_path):
    # The CSV column order comes from the rows: a resumed point must not come back with sorted keys.
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.open()
        journal.append(_record(1, rows=[{"z": 1, "a": 2, "m": 3}]))
    assert list(Journal(tmp_path / "j.jsonl").read()[point_key({"a": 1})].rows[0]) == ["z", "a", "m"]


def test_damaged_middle_line_is_an_error(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(_record(1).to_line() + b"{not json\n" + _record(2).to_line())
    with pytest.raises(JournalError, match="line 2"):
        Journal(path).read()


def test_key_must_match_params(tmp_path):
    path = tmp_path / "j.jsonl"
    line = json.loads(_record(1).to_line())
    line["params"]["a"] = 5
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(JournalError, match="does not match"):
        Journal(path).read()


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as first:
        first.open()
        with pytest.raises(JournalError, match="another sweep"):
            Journal(path).open()
    with Journal(path) as again:  # released on close
        again.open()


def test_reset_empties_the_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.open()
        journal.append(_record(1))
    with Journal(path) as journal:
        assert journal.open(reset=True) == {}
    assert path.read_bytes() == b""


def test_materialise_follows_grid_order_and_skips_missing():
    points = [{"a": 3}, {"a": 1}, {"a": 2}]
    records = {r.key: r for r in (_record(1, [{"v": 1}, {"v": 2, "w": "x"}]), _record(3))}
    rows, columns = materialise_rows(points, records)
    assert [r["a"] for r in rows] == [3, 1, 1]
    assert columns == ["a", "v", "w"]
    assert rows[2] == {"a": 1, "v": 2, "w": "x"}
