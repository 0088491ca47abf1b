//! Files applied to a Delta table on the local disk, against the reference merge (`common::merge`, the lake merger's
//! reading of the files): upserts, deletes, a replacing full load, a file applied twice, a file applied late and a
//! query that gains a field; small files compacted.

mod support;

use common::messages::CompletionMessage;
use deltalake::DeltaTable;
use support::*;
use table_writer::delta::{Applied, apply, deletions_table, row_count};
use table_writer::maintenance::{COMPACT_AT, compact, expire, maintain};

#[tokio::test]
async fn days_of_files_a_duplicate_a_late_file_a_new_field_and_a_full_reload_leave_the_reference_merge() {
    let (_dir, mut table) = new_table().await;
    let days = days();
    let mut applied = Vec::new();
    for (completion, csv) in &days {
        let outcome = apply(&mut table, completion, &source(csv)).await.unwrap();
        assert!(matches!(outcome, Applied::Committed { .. }), "{outcome:?}");
        applied.push((completion, *csv));
        assert_eq!(table_rows(&table).await, expected(&applied), "after {}", completion.job_id);
        if completion.job_id == "j3" {
            assert_eq!(table_rows(&table).await["a4"]["Account.Name"], "Dee", "the late file's older version lost");
            assert_eq!(row_count(&table).await.unwrap(), 4);
            // Delivered again: recorded, not applied twice.
            let (again, again_csv) = &days[1];
            assert_eq!(apply(&mut table, again, &source(again_csv)).await.unwrap(), Applied::AlreadyApplied);
            assert_eq!(table_rows(&table).await, expected(&applied));
        }
    }
    // The full load replaced the table: a5 and the others not in it are gone.
    assert_eq!(row_count(&table).await.unwrap(), 1);
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (DuckDB and deltalake in its Python venv)"]
async fn duckdb_and_delta_rs_python_read_the_tables_rows_as_the_reference_merge_has_them() {
    let (dir, mut table) = new_table().await;
    let days = days();
    let mut applied = Vec::new();
    for (completion, csv) in &days {
        apply(&mut table, completion, &source(csv)).await.unwrap();
        apply(&mut table, completion, &source(csv)).await.unwrap();
        applied.push((completion, *csv));
        let read = read_with_python(&[dir.path().as_os_str()]);
        for reader in ["duckdb", "deltalake"] {
            assert_eq!(rows_read_by(&read, reader), expected(&applied), "{reader}, after {}", completion.job_id);
        }
    }
}

#[tokio::test]
async fn a_file_whose_column_changed_type_is_refused_and_the_table_is_untouched() {
    let (_dir, mut table) = new_table().await;
    let (first, csv) = file(
        "j1",
        "2026-11-01T06:00:00Z",
        true,
        COLUMNS,
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,10\n",
    );
    apply(&mut table, &first, &source(csv)).await.unwrap();
    let version = table.version();
    let text_balance = [("Account.Name", "text"), ("Account.Balance", "text")];
    let csv = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,x\n";
    let (changed, csv) = file("j2", "2026-11-02T06:00:00Z", false, &text_balance, csv);
    let error = apply(&mut table, &changed, &source(csv)).await.unwrap_err();
    assert!(matches!(error, table_writer::error::ApplyError::Refused(_)), "{error}");
    assert!(error.to_string().contains("column Balance"), "{error}");
    assert_eq!(table.version(), version);

    // A stored file whose records are not the ones its completion counted (cut, or replaced since) is refused.
    let (day, csv) = file(
        "j3",
        "2026-11-03T06:00:00Z",
        false,
        COLUMNS,
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a2,Bo,1\n",
    );
    let counted_more = CompletionMessage { record_count: 2, ..day };
    let error = apply(&mut table, &counted_more, &source(csv)).await.unwrap_err();
    assert!(error.to_string().contains("1 records read, the completion says 2"), "{error}");
    assert_eq!(table.version(), version);
}

#[tokio::test]
async fn a_full_load_applied_after_a_newer_increment_keeps_the_increments_rows() {
    let (_dir, mut table) = new_table().await;
    let first: &'static str =
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,1\nfalse,a2,Bob,2\n";
    let newer: &'static str =
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,11\nfalse,a3,Cy,3\n";
    let reload: &'static str =
        "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,1\nfalse,a2,Bob,2\nfalse,a4,Dee,4\n";
    let files = [
        file("j1", "2026-11-01T06:00:00Z", true, COLUMNS, first),
        file("j3", "2026-11-03T06:00:00Z", false, COLUMNS, newer),
        // Zuora's full load of the 2nd, published after the 3rd's increment.
        file("j2", "2026-11-02T06:00:00Z", true, COLUMNS, reload),
    ];
    let mut applied = Vec::new();
    for (completion, csv) in &files {
        apply(&mut table, completion, &source(csv)).await.unwrap();
        applied.push((completion, *csv));
    }
    assert_eq!(table_rows(&table).await, expected(&applied));
    assert_eq!(table_rows(&table).await["a1"]["Account.Balance"], "11");
}

#[tokio::test]
async fn a_full_loads_segments_in_either_order_leave_every_row_of_the_load_and_a_segment_redelivered_changes_nothing() {
    let first = account("j1", "2026-11-01T06:00:00Z", true, "false,a1,Ann,1\nfalse,a2,Bob,2\n");
    // Zuora's full load of the 2nd in two files: a2 is gone, a3 is new.
    let (zero, zero_csv) = account("j2", "2026-11-02T06:00:00Z", true, "false,a1,Ann,11\n");
    let (one, one_csv) = account("j2", "2026-11-02T06:00:00Z", true, "false,a3,Cy,3\n");
    let one = CompletionMessage { segment: 1, segments: 2, ..one };
    let zero = CompletionMessage { segments: 2, ..zero };
    // The first segment dead-lettered and redriven after the second was merged, and the order it should have had.
    for order in [[(&one, one_csv), (&zero, zero_csv)], [(&zero, zero_csv), (&one, one_csv)]] {
        let (_dir, mut table) = new_table().await;
        apply(&mut table, &first.0, &source(first.1)).await.unwrap();
        for (completion, csv) in order {
            let outcome = apply(&mut table, completion, &source(csv)).await.unwrap();
            assert!(matches!(outcome, Applied::Committed { .. }), "segment {}: {outcome:?}", completion.segment);
        }
        let rows = table_rows(&table).await;
        assert_eq!(rows.keys().collect::<Vec<_>>(), ["a1", "a3"], "first applied: segment {}", order[0].0.segment);
        assert_eq!(rows["a1"]["Account.Balance"], "11");
        for (completion, csv) in order {
            assert_eq!(apply(&mut table, completion, &source(csv)).await.unwrap(), Applied::AlreadyApplied);
        }
        assert_eq!(table_rows(&table).await, rows);
    }
}

#[tokio::test]
async fn rows_deleted_by_a_newer_file_or_absent_from_a_newer_full_load_stay_deleted_when_an_older_file_comes_late() {
    let (_dir, mut table) = new_table().await;
    let files = [
        file(
            "j1",
            "2026-11-01T06:00:00Z",
            true,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a1,Ann,1\nfalse,a2,Bob,2\nfalse,a3,Cy,3\n",
        ),
        // a2 deleted on the 3rd; the 2nd's increment, which still has it, published after.
        file(
            "j3",
            "2026-11-03T06:00:00Z",
            false,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             true,a2,,\n",
        ),
        file(
            "j2",
            "2026-11-02T06:00:00Z",
            false,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a2,Bob,22\nfalse,a4,Dee,4\n",
        ),
        // Zuora's full load of the 5th has a1 only; the 4th's increment, published after, has a3 and a new a6.
        file(
            "j5",
            "2026-11-05T06:00:00Z",
            true,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a1,Ann,5\n",
        ),
        file(
            "j4",
            "2026-11-04T06:00:00Z",
            false,
            COLUMNS,
            "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\n\
             false,a3,Cy,33\nfalse,a6,Fay,6\n",
        ),
    ];
    let mut applied = Vec::new();
    for (completion, csv) in &files {
        let outcome = apply(&mut table, completion, &source(csv)).await.unwrap();
        applied.push((completion, *csv));
        assert_eq!(table_rows(&table).await, expected(&applied), "after {}", completion.job_id);
        match completion.job_id.as_str() {
            "j2" => assert!(!table_rows(&table).await.contains_key("a2"), "a2, deleted on the 3rd, came back"),
            "j4" => assert_eq!(outcome, Applied::Superseded { full_load_at: at("2026-11-05T06:00:00Z") }),
            _ => assert!(matches!(outcome, Applied::Committed { .. }), "{outcome:?}"),
        }
    }
    // The deletion is recorded once, however often its file is delivered.
    let (again, csv) = &files[1];
    assert_eq!(apply(&mut table, again, &source(csv)).await.unwrap(), Applied::AlreadyApplied);
    assert_eq!(table_rows(&table).await, expected(&applied));
}

#[tokio::test]
async fn deletions_expire_17_days_before_the_newest_and_a_file_older_than_that_is_refused_not_applied() {
    let (_dir, mut table) = new_table().await;
    let files = [
        account("j1", "2026-11-01T06:00:00Z", true, "false,a1,Ann,1\nfalse,a2,Bob,2\nfalse,a3,Cy,3\n"),
        account("j2", "2026-11-02T06:00:00Z", false, "true,a2,,\n"),
        account("j3", "2026-11-30T06:00:00Z", false, "true,a3,,\n"),
    ];
    for (completion, csv) in &files {
        apply(&mut table, completion, &source(csv)).await.unwrap();
    }
    async fn deletions(table: &DeltaTable) -> u64 {
        row_count(&deletions_table(table).await.unwrap().unwrap()).await.unwrap()
    }
    assert_eq!(deletions(&table).await, 2);
    let done = maintain(&mut table, std::time::Duration::from_secs(7 * 86_400)).await.unwrap();
    assert_eq!(done.deletions_expired, 1, "a2's, 28 days older than a3's");
    assert_eq!(deletions(&table).await, 1, "the deletions table is bounded");

    // A late file from before the 13th could bring a2 back: refused, with what to do.
    let (late, csv) = account("j4", "2026-11-05T06:00:00Z", false, "false,a2,Bob,22\n");
    let refused = apply(&mut table, &late, &source(csv)).await.unwrap_err();
    assert!(matches!(refused, table_writer::error::ApplyError::Refused(_)), "{refused}");
    assert!(
        refused.to_string().contains("before 2026-11-13T06:00:00+00:00") && refused.to_string().contains("backfill"),
        "{refused}"
    );
    // One from after it is applied as ever, and a3 stays deleted.
    let (later, csv) = account("j5", "2026-11-20T06:00:00Z", false, "false,a3,Cy,33\nfalse,a4,Dee,4\n");
    assert!(matches!(apply(&mut table, &later, &source(csv)).await.unwrap(), Applied::Committed { .. }));
    assert_eq!(table_rows(&table).await.keys().collect::<Vec<_>>(), ["a1", "a4"]);
}

#[tokio::test]
async fn expiring_replaced_versions_deletes_only_the_files_no_current_row_is_in() {
    let (dir, mut table) = new_table().await;
    let days = days();
    for (completion, csv) in &days[..3] {
        apply(&mut table, completion, &source(csv)).await.unwrap();
    }
    let current = table.snapshot().unwrap().log_data().num_files();
    assert!(parquet_files(dir.path()) > current, "the merges replaced no file");
    // Versions replaced less than a day ago stay for time travel.
    assert_eq!(expire(&table, std::time::Duration::from_secs(86_400)).await.unwrap(), 0);
    let rows = table_rows(&table).await;
    let expired = expire(&table, std::time::Duration::ZERO).await.unwrap();
    assert!(expired > 0);
    assert_eq!(parquet_files(dir.path()), current);
    assert_eq!(table_rows(&table).await, rows);
    // The table goes on taking files.
    let (late, csv) = &days[3];
    apply(&mut table, late, &source(csv)).await.unwrap();
    let applied: Vec<_> = days[..4].iter().map(|(c, csv)| (c, *csv)).collect();
    assert_eq!(table_rows(&table).await, expected(&applied));
}

/// A table of many small files: a full load of rows f0.., then hourly files of one new row each. A merge rewrites only the
/// files its Ids are in, so each adds a small file. Every other one also deletes a row of the full load (a file
/// in the deletions table); the last days' query gained a field. The files, applied; their reference rows.
async fn table_of_small_files() -> (tempfile::TempDir, DeltaTable, Vec<(CompletionMessage, &'static str)>, Rows) {
    let (dir, mut table) = new_table().await;
    let (mut files, days) = (Vec::new(), 3 * COMPACT_AT);
    for day in 0..days {
        let widened = day + 2 >= days;
        let mut columns = COLUMNS.to_vec();
        let mut csv = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance".to_owned();
        let extra = if widened {
            columns.push(("Account.Region", "text"));
            csv.push_str(",Account.Region");
            ",EU"
        } else {
            ""
        };
        csv.push('\n');
        if day == 0 {
            (0..days).for_each(|i| csv.push_str(&format!("false,f{i},Full {i},{i}{extra}\n")));
        }
        csv.push_str(&format!("false,n{day},Name {day},{day}{extra}\n"));
        if day % 2 == 1 {
            csv.push_str(&format!("true,f{day},,{}\n", if widened { "," } else { "" }));
        }
        // An hour apart: the deletions stay within the 17 days kept.
        let executed_at = (at("2026-11-01T06:00:00Z") + chrono::Duration::hours(day as i64)).to_rfc3339();
        files.push(file(&format!("d{day}"), &executed_at, day == 0, &columns, csv.leak()));
    }
    for (completion, csv) in &files {
        apply(&mut table, completion, &source(csv)).await.unwrap();
    }
    let applied: Vec<_> = files.iter().map(|(c, csv)| (c, *csv)).collect();
    let rows = table_rows(&table).await;
    assert_eq!(rows, expected(&applied));
    (dir, table, files, rows)
}

#[tokio::test]
async fn small_files_are_compacted_into_one_with_the_rows_the_transactions_and_the_deletions_kept() {
    let (dir, mut table, files, rows) = table_of_small_files().await;
    let before = table.snapshot().unwrap().log_data().num_files();
    assert!(before >= COMPACT_AT, "{before} data files");
    let version = table.version().unwrap();

    assert_eq!(compact(&mut table).await.unwrap(), before);
    assert_eq!(table.snapshot().unwrap().log_data().num_files(), 1);
    assert_eq!(table.version(), Some(version + 1), "one commit");
    assert_eq!(table_rows(&table).await, rows);
    assert_eq!(compact(&mut table).await.unwrap(), 0, "nothing small left");
    let (first, csv) = &files[1];
    assert_eq!(apply(&mut table, first, &source(csv)).await.unwrap(), Applied::AlreadyApplied);

    // The deletions table too, and both tables' replaced files expired.
    let done = table_writer::maintenance::maintain(&mut table, std::time::Duration::ZERO).await.unwrap();
    assert!(done.compacted >= COMPACT_AT && done.expired >= before, "{done:?}");
    assert_eq!(parquet_files(dir.path()), 1);
    assert_eq!(parquet_files(&dir.path().join("_zle_deleted")), 1);
    // A late file still finds the Ids deleted after it.
    let csv = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,f1,Late,1\n";
    let (late, csv) = file("late", "2026-11-01T06:30:00Z", false, COLUMNS, csv);
    apply(&mut table, &late, &source(csv)).await.unwrap();
    assert_eq!(table_rows(&table).await, rows, "f1, deleted on day 1, stays deleted");
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (DuckDB and deltalake in its Python venv)"]
async fn duckdb_and_delta_rs_python_read_a_compacted_table_as_before() {
    let (dir, mut table, _, rows) = table_of_small_files().await;
    table_writer::maintenance::maintain(&mut table, std::time::Duration::ZERO).await.unwrap();
    let read = read_with_python(&[dir.path().as_os_str()]);
    for reader in ["duckdb", "deltalake"] {
        assert_eq!(rows_read_by(&read, reader), rows, "{reader}");
    }
}
