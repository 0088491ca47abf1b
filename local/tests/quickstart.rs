//! The quick start, run as the README's first command runs it (embedded configuration, a fresh lake directory):
//! every step publishes every object, every file is verified, and the merged lake equals the simulator's data.

use local_export::quickstart::{self, COMPLETIONS_FILE, Options};

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_exports_checks_and_summarises_every_object() {
    let scratch = test_support::Scratch::new("quickstart");
    let lake_dir = scratch.path();
    let options = Options { lake_dir: lake_dir.to_owned(), config: None, catalogue: None, consumers: 2 };
    // Twice: the second run replaces what the first left.
    for _ in 0..2 {
        let report = quickstart::run(&options).await.unwrap();
        assert_eq!((report.objects, report.objects_matching), (13, 13));
        assert_eq!(report.files.len(), 3 * 13, "three steps, every object");
        assert!(report.files.iter().filter(|f| f.completion.full).count() == 13, "day 1 is full loads");
        assert!(report.files.iter().any(|f| f.deleted > 0), "increments carry deleted rows");
        for file in &report.files {
            assert_eq!(file.records, file.completion.record_count, "{}", file.path.display());
            assert!(file.path.exists(), "{}", file.path.display());
        }
        let lines = std::fs::read_to_string(lake_dir.join(COMPLETIONS_FILE)).unwrap();
        assert_eq!(lines.lines().count(), report.files.len(), "one completion line per file");
        let summary = quickstart::summary(&report);
        assert!(summary.contains("merged lake equals Zuora for 13/13 objects"), "{summary}");
        assert_eq!(report.audits.len(), 13, "producer audit of every object");
        assert!(report.audits.iter().all(|line| line.ends_with(": equal")), "{summary}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_runs_the_old_exports_queries_and_keeps_its_fixed_keys() {
    let scratch = test_support::Scratch::new("quickstart-old");
    let lake_dir = scratch.path();
    let catalogue = Some("builtin:old-export".into());
    let options = Options { lake_dir: lake_dir.to_owned(), config: None, catalogue, consumers: 2 };
    let report = quickstart::run(&options).await.unwrap();
    assert!(report.audits.iter().all(|line| line.ends_with(": equal")), "{:?}", report.audits);
    // The lake's joined columns (Account.Id, Product.Name, ...) equal Zuora's, as the simulator's truth reads them.
    assert_eq!((report.objects, report.objects_matching), (13, 13));
    let account = report.files.iter().rev().find(|f| f.completion.object == "Account").unwrap();
    let bucket = lake_dir.join(&account.completion.bucket);
    assert_eq!(account.completion.bucket, "ophan-raw-zuora-increment-account");
    // The old readers' fixed keys hold the last increment, the metadata its count.
    assert_eq!(std::fs::read(bucket.join("Account.csv")).unwrap(), std::fs::read(&account.path).unwrap());
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bucket.join("metadata/Account.json")).unwrap()).unwrap();
    assert_eq!(metadata["recordCount"].as_u64(), Some(account.records));
}
