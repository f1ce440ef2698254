"""course_utils.delta_files on small Delta tables written by delta-rs (no Spark).

``scan_metrics`` needs a Spark session; 01a and 03a execute it (and assert on its numbers)
in the notebook tier.
"""

from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from course_utils.delta_files import file_ranges, files_on_disk, files_to_read, table_files


def _append(path: Path, customer_ids: range) -> None:
    write_deltalake(str(path), pd.DataFrame({"customer_id": list(customer_ids), "value": [1.0] * len(customer_ids)}), mode="append")


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    """Three appends, one file each, with the disjoint id ranges 0–9, 10–19, 20–29."""
    path = tmp_path / "events"
    for start in (0, 10, 20):
        _append(path, range(start, start + 10))
    return path


def test_table_files_lists_each_versions_files(table: Path) -> None:
    assert len(table_files(table)) == 3
    assert len(table_files(table, version=0)) == 1 and table_files(table, version=0) < table_files(table)
    assert table_files(table) == {Path(uri).name for uri in DeltaTable(str(table)).file_uris()}


def test_files_on_disk_counts_unreferenced_files_and_skips_the_log(table: Path) -> None:
    write_deltalake(str(table), pd.DataFrame({"customer_id": [99], "value": [2.0]}), mode="overwrite")
    DeltaTable(str(table)).create_checkpoint()  # a Parquet file inside _delta_log, which is not data
    assert len(table_files(table)) == 1
    assert files_on_disk(table) == table_files(table) | table_files(table, version=2)
    assert not any(name.endswith(".checkpoint.parquet") for name in files_on_disk(table))


def test_file_ranges_are_the_logs_min_and_max(table: Path) -> None:
    ranges = file_ranges(table, "customer_id")
    assert list(ranges.columns) == ["path", "num_records", "min", "max"]
    assert ranges[["min", "max"]].values.tolist() == [[0, 9], [10, 19], [20, 29]]
    assert ranges.num_records.tolist() == [10, 10, 10]


def test_files_to_read_applies_the_min_max_test(table: Path) -> None:
    assert files_to_read(table, "customer_id", [0, 15, 29, 30, -1]) == [1, 1, 1, 0, 0]
    _append(table, range(5, 25))  # one file spanning 5–24 overlaps all three
    assert files_to_read(table, "customer_id", [7, 27]) == [2, 1]
    assert files_to_read(table, "customer_id", [7], version=2) == [1]


def test_bad_input_names_the_problem(tmp_path: Path, table: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Delta table"):
        table_files(tmp_path / "nothing-here")
    with pytest.raises(KeyError, match="no statistics.*customer_id"):
        file_ranges(table, "country")
