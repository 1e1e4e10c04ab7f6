from __future__ import annotations

from pathlib import Path

import pytest

pq = pytest.importorskip("pyarrow.parquet")

from alambic.utils.parquet import (  # noqa: E402
    ParquetRowWriter,
    list_parts,
    read_parquet_parts,
    rows_to_table,
)


def _rows(start: int, stop: int) -> list[dict[str, object]]:
    return [{"id": i, "text": f"t{i}"} for i in range(start, stop)]


def test_writes_numbered_parts_and_reads_back_in_order(tmp_path: Path) -> None:
    with ParquetRowWriter(tmp_path, rows_per_part=25) as writer:
        for start in range(0, 100, 10):
            writer.write(_rows(start, start + 10))
    names = [p.name for p in list_parts(tmp_path)]
    # a flush happens once >= 25 rows are buffered: 30, 30, 30, then the last 10 on close
    assert names == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
        "part-00003.parquet",
    ]
    assert [pq.ParquetFile(p).metadata.num_rows for p in list_parts(tmp_path)] == [30, 30, 30, 10]
    table = read_parquet_parts(tmp_path)
    assert table.column_names == ["id", "text"]
    assert table.column("id").to_pylist() == list(range(100))
    assert ParquetRowWriter.rows_written(tmp_path) == 100


def test_none_then_string_column_and_varying_metadata_keys_unify(tmp_path: Path) -> None:
    first = [
        {"q": "a", "generation": None, "alambic_metadata": {"statistics_t": {"input_tokens": 3}}},
        {"q": "b", "generation": None, "alambic_metadata": {"statistics_t": {"input_tokens": 4}}},
    ]
    second = [
        {"q": "c", "generation": "hello", "alambic_metadata": {"raw_output_t": "hello"}},
        {
            "q": "d",
            "generation": None,
            "alambic_metadata": {"error_t": {"type": "timeout", "message": "slow"}},
            "extra": 1.5,
        },
    ]
    writer = ParquetRowWriter(tmp_path, rows_per_part=1)
    writer.write(first)
    writer.write(second)
    writer.close()
    assert len(list_parts(tmp_path)) == 2
    table = read_parquet_parts(tmp_path)
    assert table.column_names == ["q", "generation", "alambic_metadata", "extra"]
    assert str(table.schema.field("generation").type) == "string"
    rows = table.to_pylist()
    assert [r["generation"] for r in rows] == [None, None, "hello", None]
    assert rows[0]["alambic_metadata"]["statistics_t"] == {"input_tokens": 3}
    assert rows[0]["alambic_metadata"]["error_t"] is None
    assert rows[3]["alambic_metadata"]["error_t"] == {"type": "timeout", "message": "slow"}
    assert rows[2]["alambic_metadata"]["raw_output_t"] == "hello"
    assert [r["extra"] for r in rows] == [None, None, None, 1.5]


def test_values_without_a_common_type_become_json_text(tmp_path: Path) -> None:
    table = rows_to_table([{"v": 1}, {"v": {"a": 1}}])
    assert table.column("v").to_pylist() == ["1", '{"a": 1}']
    writer = ParquetRowWriter(tmp_path, rows_per_part=1)
    writer.write([{"v": 1}])
    writer.write([{"v": [1, 2]}])
    writer.close()
    assert read_parquet_parts(tmp_path).column("v").to_pylist() == ["1", "[1, 2]"]


def test_truncate_and_continue_after_a_crash(tmp_path: Path) -> None:
    writer = ParquetRowWriter(tmp_path, rows_per_part=10)
    for start in range(0, 50, 10):
        writer.write(_rows(start, start + 10))
    # crash: the writer is never closed; 50 rows are on disk in 5 parts
    assert ParquetRowWriter.rows_written(tmp_path) == 50
    ParquetRowWriter.truncate_to(tmp_path, 23)
    assert ParquetRowWriter.rows_written(tmp_path) == 23
    assert [p.name for p in list_parts(tmp_path)] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    resumed = ParquetRowWriter(tmp_path, rows_per_part=10)
    assert resumed.next_part == 3
    resumed.write(_rows(23, 40))
    resumed.close()
    assert read_parquet_parts(tmp_path).column("id").to_pylist() == list(range(40))
    with pytest.raises(ValueError, match="hold only 40"):
        ParquetRowWriter.truncate_to(tmp_path, 41)


def test_stray_temporary_file_is_ignored_and_overwrite_clears(tmp_path: Path) -> None:
    (tmp_path / ".part-00000.parquet.tmp").write_bytes(b"half written")
    assert list_parts(tmp_path) == []
    with ParquetRowWriter(tmp_path) as writer:
        writer.write(_rows(0, 3))
    with ParquetRowWriter(tmp_path, overwrite=True) as writer:
        writer.write(_rows(10, 12))
    assert read_parquet_parts(tmp_path).column("id").to_pylist() == [10, 11]
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(_rows(0, 1))


def test_memory_stays_bounded_by_flushing(tmp_path: Path) -> None:
    writer = ParquetRowWriter(tmp_path, rows_per_part=1_000_000, max_buffer_bytes=4096)
    for start in range(0, 2_000, 100):
        writer.write(_rows(start, start + 100))
        assert writer._buffered_bytes < 4096 + 10_000
    writer.close()
    assert len(list_parts(tmp_path)) > 1
    assert ParquetRowWriter.rows_written(tmp_path) == 2_000


def test_consolidate_parts_streams_to_one_arrow_file(tmp_path: Path) -> None:
    import pyarrow as pa

    from alambic.utils.parquet import consolidate_parts

    writer = ParquetRowWriter(tmp_path / "leaf", rows_per_part=1)
    writer.write([{"a": 1, "g": None, "m": {"x": 1}}])
    writer.write([{"a": 2, "g": "s", "m": {"err": "e"}}])
    writer.close()
    out = consolidate_parts(tmp_path / "leaf", tmp_path / "leaf" / "all.arrow", drop_columns=["m"])
    with pa.OSFile(str(out), "rb") as source:
        table = pa.ipc.open_stream(source).read_all()
    assert table.to_pylist() == [{"a": 1, "g": None}, {"a": 2, "g": "s"}]
    assert [p.name for p in list_parts(tmp_path / "leaf")] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]

    conflicting = ParquetRowWriter(tmp_path / "conflict", rows_per_part=1)
    conflicting.write([{"v": 1}])
    conflicting.write([{"v": "text"}])
    conflicting.close()
    out = consolidate_parts(tmp_path / "conflict", tmp_path / "conflict.arrow")
    with pa.OSFile(str(out), "rb") as source:
        assert pa.ipc.open_stream(source).read_all().column("v").to_pylist() == ["1", "text"]
