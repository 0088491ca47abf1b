//! The table writer as a service and on AWS: its queue and DLQ, its maintenance when idle, tables on moto's S3
//! with two writers, and the Glue catalog.

mod support;

use common::messages::CompletionMessage;
use deltalake::DeltaTable;
use support::*;
use table_writer::delta::{Applied, apply, has_log};
use table_writer::glue::GlueCatalog;
use table_writer::service::{Settled, TableWriter, run};

/// The table of Account under `prefix` of `bucket` on moto's S3, loaded when it exists: a writer's own view.
async fn table_on_s3(bucket: &str) -> DeltaTable {
    table_writer::s3::register();
    let url = format!("s3://{bucket}/zuora/Account/").parse().unwrap();
    let options = table_writer::s3::storage_options(&test_support::aws_config());
    let mut table = deltalake::DeltaTableBuilder::from_url(url).unwrap().with_storage_options(options).build().unwrap();
    if has_log(&table, "").await.unwrap() {
        table.load().await.unwrap();
    }
    table
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (tables on moto's S3, read by delta-rs's Python package)"]
async fn on_s3_two_writers_committing_from_the_same_version_lose_neither_file_and_a_duplicate_applies_once() {
    let bucket = test_support::Aws::connect().await.bucket("tables").await;
    let days = days();
    let apply_day = |day: usize, mut table: DeltaTable| {
        let (completion, csv) = &days[day];
        async move { apply(&mut table, completion, &source(csv)).await }
    };
    apply_day(0, table_on_s3(&bucket).await).await.unwrap();
    // Two writers load the same version; each commits its own file as the next version. S3 takes only the first
    // `_delta_log` entry of a version (If-None-Match): the second writer must see that, not overwrite it.
    let (first, second) = (table_on_s3(&bucket).await, table_on_s3(&bucket).await);
    let loaded = first.version().unwrap();
    let committed = apply_day(1, first).await.unwrap();
    assert!(matches!(committed, Applied::Committed { version, .. } if version == loaded + 1), "{committed:?}");
    match apply_day(2, second).await {
        Ok(Applied::Committed { version, .. }) => assert_eq!(version, loaded + 2, "committed after the first's"),
        Ok(other) => panic!("{other:?}"),
        // A conflict: the completion comes back, and its writer reads the table again.
        Err(e) => {
            eprintln!("the second writer's commit conflicted: {e}");
            let again = apply_day(2, table_on_s3(&bucket).await).await.unwrap();
            assert!(matches!(again, Applied::Committed { .. }), "{again:?}");
        }
    }
    let outcome = apply_day(1, table_on_s3(&bucket).await).await.unwrap();
    assert_eq!(outcome, Applied::AlreadyApplied, "a completion delivered again");
    let applied: Vec<_> = days[..3].iter().map(|(c, csv)| (c, *csv)).collect();
    assert_eq!(table_rows(&table_on_s3(&bucket).await).await, expected(&applied));
    // And as a reader this project did not write sees it on S3.
    let url = format!("s3://{bucket}/zuora/Account/");
    let endpoint = test_support::aws_config().endpoint_url.unwrap();
    let read = read_with_python(&[url.as_ref(), endpoint.as_ref()]);
    assert_eq!(rows_read_by(&read, "deltalake"), expected(&applied), "delta-rs's Python package");
}

/// The quick start's writer, on its `memory://` queues (FIFO, as SQS's) and a lake directory in `dir`.
async fn local_writer(dir: &std::path::Path) -> (std::sync::Arc<TableWriter>, common::services::Services) {
    let local = include_str!("../../deploy/examples/local.toml");
    let text = format!("{local}\n[aws]\nlocal_dir = {:?}\n", dir.to_str().unwrap());
    let config = common::config::Config::parse(&text, "local.toml", None).unwrap();
    let services = common::services::Services::connect(&config).await;
    (std::sync::Arc::new(TableWriter::from_config(&config, &services).unwrap()), services)
}

/// Stores each file and announces it, as the consumer does.
async fn publish(services: &common::services::Services, files: &[(CompletionMessage, &str)]) {
    for (completion, csv) in files {
        let body = bytes::Bytes::copy_from_slice(csv.as_bytes());
        services.store.put(&completion.bucket, &completion.key, body).await.unwrap();
        services.queues.completions().announce(completion).await.unwrap();
    }
}

#[tokio::test]
async fn a_body_that_is_no_completion_and_a_file_the_table_cannot_take_go_to_the_dlq_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, services) = local_writer(dir.path()).await;
    let (tables, dlq) = (services.queues.tables.clone().unwrap(), services.queues.tables_dlq.clone().unwrap());
    let days = days();
    publish(&services, &days[..1]).await;
    let text_balance = [("Account.Name", "text"), ("Account.Balance", "text")];
    let csv = "Account.IsDeleted,Account.Id,Account.Name,Account.Balance\nfalse,a1,Ann,x\n";
    publish(&services, &[file("j2", "2026-11-02T06:00:00Z", false, &text_balance, csv)]).await;
    let garbage = common::queue::OutgoingMessage::new("not a completion").grouped("Account").deduplicated("g");
    tables.send(garbage).await.unwrap();
    let mut settled = Vec::new();
    while let Some(message) = tables.receive(1, std::time::Duration::ZERO).await.unwrap().pop() {
        settled.push(writer.handle(&message).await.unwrap());
    }
    assert!(matches!(settled[0], Settled::Applied(Applied::Committed { .. })), "{settled:?}");
    let dead = test_support::drain(dlq.as_ref()).await;
    let reasons: Vec<&str> = dead.iter().map(|m| m.attributes["reason"].as_str()).collect();
    assert_eq!(reasons.len(), 2, "{settled:?}");
    assert!(
        reasons[0].starts_with("s3://raw/Account/j2.csv: ") && reasons[0].contains("column Balance"),
        "{reasons:?}"
    );
    assert!(reasons[1].starts_with("not a completion message: "), "{reasons:?}");
    assert_eq!(tables.depth().await.unwrap(), common::queue::QueueDepth::default(), "each settled once");
}

#[tokio::test]
async fn the_writer_expires_replaced_versions_once_its_queue_falls_idle_not_only_on_its_hourly_timer() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, services) = local_writer(dir.path()).await;
    let days = days();
    publish(&services, &days[..3]).await;
    let applied: Vec<_> = days[..3].iter().map(|(c, csv)| (c, *csv)).collect();
    let table_dir = dir.path().join("zuora-tables/Account");
    let all_applied_and_expired = async {
        loop {
            let table = writer.table("Account").await.unwrap();
            let current = table.snapshot().ok().map(|s| s.log_data().num_files());
            if current == Some(parquet_files(&table_dir)) && table_rows(&table).await == expected(&applied) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    // Keeping no replaced version; the writer stops once they are gone (or after a minute, failing below).
    let stop = tokio::time::timeout(std::time::Duration::from_secs(60), all_applied_and_expired);
    let wait = std::time::Duration::from_millis(20);
    run(writer.clone(), wait, std::time::Duration::ZERO, async { stop.await.unwrap_or(()) }).await;
    let table = writer.table("Account").await.unwrap();
    assert_eq!(table_rows(&table).await, expected(&applied), "every file applied");
    assert_eq!(parquet_files(&table_dir), table.snapshot().unwrap().log_data().num_files(), "replaced files left");
}

/// A local writer registering its tables in a Glue database of moto's, named for this test and not created yet;
/// moto's Glue client.
async fn writer_with_glue(dir: &std::path::Path) -> (TableWriter, common::services::Services, Glue) {
    let aws = test_support::aws_config();
    let client = aws_sdk_glue::Client::new(&aws.load().await);
    let database = test_support::unique("zle").replace('-', "_");
    let (writer, services) = local_writer(dir).await;
    let writer = std::sync::Arc::into_inner(writer).unwrap().with_catalog(GlueCatalog::new(&aws, &database).await);
    (writer, services, Glue { client, database })
}

/// A Glue database of moto's and its client.
struct Glue {
    client: aws_sdk_glue::Client,
    database: String,
}

impl Glue {
    async fn create_database(&self) {
        let input = aws_sdk_glue::types::DatabaseInput::builder().name(&self.database).build().unwrap();
        self.client.create_database().database_input(input).send().await.unwrap();
    }

    /// The database's entry of `name`.
    async fn table(&self, name: &str) -> aws_sdk_glue::types::Table {
        let got = self.client.get_table().database_name(&self.database).name(name).send().await;
        got.unwrap().table.unwrap()
    }
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (moto's Glue)"]
async fn each_table_is_registered_in_the_glue_database_as_a_delta_table_and_an_existing_entry_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, services, glue) = writer_with_glue(dir.path()).await;
    glue.create_database().await;
    publish(&services, &days()[..2]).await;
    let tables = services.queues.tables.clone().unwrap();
    while let Some(message) = tables.receive(1, std::time::Duration::ZERO).await.unwrap().pop() {
        writer.handle(&message).await.unwrap();
    }
    let entry = glue.table("account").await;
    let parameters = entry.parameters.unwrap();
    assert_eq!((parameters["table_type"].as_str(), entry.table_type.as_deref()), ("DELTA", Some("EXTERNAL_TABLE")));
    let location = entry.storage_descriptor.unwrap().location.unwrap();
    assert_eq!(location, writer.table("Account").await.unwrap().table_url().to_string());
    // An entry an operator made (or another writer) is left as it is.
    let catalog = GlueCatalog::new(&test_support::aws_config(), &glue.database).await;
    assert!(!catalog.register("Account", "s3://elsewhere/Account/").await.unwrap());
    let kept = glue.table("account").await;
    assert_eq!(kept.storage_descriptor.unwrap().location.unwrap(), location);
    assert!(catalog.register("Invoice", "s3://tables/Invoice/").await.unwrap(), "a new entry");
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (moto's Glue)"]
async fn a_glue_failure_after_a_commit_settles_the_file_and_the_table_is_registered_at_the_next_maintenance() {
    // The database does not exist yet: registering fails.
    let dir = tempfile::tempdir().unwrap();
    let (writer, services, glue) = writer_with_glue(dir.path()).await;
    publish(&services, &days()[..1]).await;
    let tables = services.queues.tables.clone().unwrap();
    let message = tables.receive(1, std::time::Duration::ZERO).await.unwrap().pop().unwrap();
    let settled = writer.handle(&message).await.unwrap();
    assert!(matches!(settled, Settled::Applied(Applied::Committed { .. })), "{settled:?}");
    tables.set_visibility(&message.receipt, std::time::Duration::ZERO).await.ok();
    assert!(tables.receive(1, std::time::Duration::ZERO).await.unwrap().is_empty(), "the file is settled");
    glue.create_database().await;
    writer.maintain(table_writer::service::KEEP_VERSIONS).await;
    let entry = glue.table("account").await;
    assert_eq!(
        entry.storage_descriptor.unwrap().location.unwrap(),
        writer.table("Account").await.unwrap().table_url().to_string()
    );
}
