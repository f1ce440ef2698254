"""What 01a_delta_lake must have recorded (see the Checks cell of the notebook)."""

from typing import Any


def delta_lake(r: dict[str, Any]) -> None:
    # Bronze keeps every delivered row; silver removes exactly the re-delivered copies.
    assert r["redelivered_rows"] > 0
    # Bronze, read back from Delta, has the raw CSV header's columns as strings and a raw row stored exactly.
    bronze = r["bronze_vs_raw"]
    assert bronze["columns"] == bronze["raw_header"] and bronze["types"] == ["string"]
    assert bronze["stored_rows"] == [bronze["raw_row"]]
    assert bronze["inferred_event_ts"] != bronze["raw_row"]["event_ts"], "schema inference would have changed it"
    assert r["duplicates_removed"] == r["redelivered_rows"]
    assert r["silver_rows"] > r["bronze_rows"] - r["redelivered_rows"], "the late December files were added to silver"

    # ACID: the failing append left version and row count unchanged; its files are orphans.
    failed = r["failed_write"]
    assert failed["error"] == "CAST_INVALID_INPUT"
    assert failed["version_after"] == failed["version_before"] == 2
    assert failed["rows_after"] == failed["rows_before"] > 0
    assert failed["partial_files"] >= 1

    # Time travel by version and by timestamp agree; RESTORE brings back every deleted row.
    travel = r["time_travel"]
    assert travel["rows_version_as_of"] == travel["rows_timestamp_as_of"] == travel["rows_after_restore"] == r["silver_rows"]
    assert travel["rows_after_delete"] < r["silver_rows"]
    assert travel["restore_version"] == travel["good_version"] + 2, "DELETE, then RESTORE: two new versions"

    # The typical mistakes fail with Delta's and Spark's real error conditions.
    errors = r["errors"]
    assert errors["missing_version"] == "DELTA_VERSION_NOT_FOUND"
    assert errors["wrong_type"] == "DELTA_FAILED_TO_MERGE_FIELDS"
    assert errors["new_column"] == "DELTA_METADATA_MISMATCH"
    assert errors["retention_check"] == "DELTA_VACUUM_RETENTION_PERIOD_TOO_SHORT"
    assert errors["vacuumed_version"].startswith("FAILED_READ_FILE")

    # Schema evolution added the column; MERGE updated exactly the changed rows and inserted the new ones.
    assert r["customers_columns"][-1] == "marketing_opt_in"
    merge = r["merge"]
    assert merge["updated"] == merge["expected_updates"] == 25
    assert merge["inserted"] == merge["expected_inserts"] > 0
    assert merge["source_rows"] == 25 + 40 + merge["inserted"]
    assert r["customer_rows"] == r["bronze_customer_rows"]

    assert r["history_operations"] == ["WRITE", "SET TBLPROPERTIES", "WRITE", "WRITE", "DELETE", "RESTORE"]

    # OPTIMIZE compacts; Z-ordering makes the one-customer query read at least 3x fewer files (measured 5 -> 1).
    files = r["files"]
    assert files["before_optimize"] == 20
    assert 1 < files["after_optimize"] < files["before_optimize"]
    assert 1 <= files["after_zorder"] <= files["after_optimize"]
    scanned = r["files_scanned"]
    assert scanned["customer_before_optimize"] == 20
    assert 3 * scanned["customer_after_zorder"] <= scanned["customer_before_zorder"] <= files["after_optimize"]
    assert scanned["customer_after_zorder"] <= 2
    assert scanned["day_before_zorder"] < scanned["day_after_zorder"], "Z-order by customer costs the date query its skipping"

    # The log: a checkpoint at a multiple of delta.checkpointInterval=5, one JSON per version.
    assert r["checkpoint_version"] == 5
    assert r["commit_files_before_vacuum"] == 8

    # VACUUM left only the current version's files; the history records VACUUM START and END.
    vacuum = r["vacuum"]
    assert vacuum["left_on_disk"] == vacuum["referenced"] == files["after_zorder"]
    assert vacuum["deleted"] > files["before_optimize"]
    assert r["final_history_length"] == 10

    # delta-rs reads the same version and the same rows as Spark.
    assert r["deltars_version"] == r["spark_version_latest"] == 9
    assert r["deltars_rows"] == r["silver_rows"]
    assert r["deltars_rows_identical"] is True


EXPECTATIONS = {"01a_delta_lake": delta_lake}
