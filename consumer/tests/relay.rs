//! The streaming relay against the simulator (source) and the tier's store (moto in ./tests/run.sh), and Garage
//! as a stricter S3: multi-part files
//! of unknown and known length, records counted exactly despite quoted newlines, and every failure leaving no
//! multipart upload behind.

use common::secret::Secret;
use common::store::ChecksumAlgorithm;
use common::zuora::{BatchQueryRequest, DeletedFormat, DeletedSpec, Job, Query, ZuoraClient, ZuoraConfig};
use consumer::relay::compress::Compression;
use consumer::relay::pool::PartPool;
use consumer::relay::{Destination, RelayError, RelaySettings, relay};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use test_support::Bucket;
use zuora_sim::{FaultRule, RunningSim, SimConfig, Simulator};

const MIB: u64 = 1024 * 1024;

async fn sim_with_accounts(rows: u64, content_length: bool) -> (RunningSim, ZuoraClient) {
    let mut config = SimConfig::default();
    config.settings.job_execution_secs = 0.0;
    config.settings.max_file_bytes = None;
    config.settings.content_length = content_length;
    config.rows.insert("Account".into(), rows);
    let sim = Simulator::start(config).await.unwrap();
    let mut zuora =
        ZuoraConfig::new(sim.base_url(), "0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b", Secret::new("sim-client-secret"));
    zuora.retry.base_delay_ms = 10;
    (sim, ZuoraClient::new(zuora).unwrap())
}

async fn account_job(zuora: &ZuoraClient) -> Job {
    account_job_as(zuora, "csv").await
}

/// The Account export, its files in `format` (`csv` or `gzip`).
async fn account_job_as(zuora: &ZuoraClient, format: &str) -> Job {
    let deleted = DeletedSpec { column: "IsDeleted".into(), format: DeletedFormat::Boolean, force_export: None };
    let query = Query::export(
        "Account",
        "SELECT Id, AccountNumber, Name, Balance, Status, Notes, CreatedDate, UpdatedDate FROM Account",
        Some(deleted),
    );
    let request = BatchQueryRequest::stateful("relay-test", "p", "relay", vec![query]).with_format(format);
    let job = zuora.submit(&request, "relay").await.unwrap();
    zuora.wait_for_job(&job.id, Duration::from_millis(20), Duration::from_secs(60)).await.unwrap()
}

fn settings() -> RelaySettings {
    RelaySettings {
        part_size: 5 * MIB,
        max_part_size: 64 * MIB,
        checksum: ChecksumAlgorithm::Crc32c,
        compression: Compression::None,
        gzip_source: false,
    }
}

async fn relay_file(
    zuora: &ZuoraClient,
    bucket: &Bucket,
    key: &str,
    file_id: &str,
) -> Result<consumer::relay::PendingUpload, RelayError> {
    let stream = zuora.download(file_id).await.unwrap();
    let length = stream.content_length;
    let destination = Destination { bucket: bucket.name.clone(), key: key.into(), content_type: "text/csv".into() };
    relay(
        stream,
        length,
        &bucket.store(),
        &destination,
        &PartPool::new(16 * MIB, 5 * MIB),
        &settings(),
        &Arc::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_of_unknown_length_and_several_parts_arrives_whole_and_counted() {
    let (_sim, zuora) = sim_with_accounts(120_000, false).await;
    let bucket = Bucket::create("relay").await;
    let job = account_job(&zuora).await;
    let batch = &job.batches[0];
    let pending = relay_file(&zuora, &bucket, "Account/full.csv", batch.file_ids()[0]).await.unwrap();
    assert_eq!(
        Some(pending.counter.data_records()),
        batch.record_count,
        "counted on the fly, quoted newlines included"
    );
    let published = pending.complete().await.unwrap();
    assert!(published.parts > 3, "{} parts", published.parts);
    let body = bucket.object("Account/full.csv").await;
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &body) as u32;
    use base64::Engine;
    assert_eq!(published.checksum, base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes()));
    assert_eq!(Some(bucket.records_in("Account/full.csv").await), batch.record_count);
    assert_eq!(bucket.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_with_content_length_is_cut_into_parts_sized_from_it() {
    let (_sim, zuora) = sim_with_accounts(80_000, true).await;
    let bucket = Bucket::create("relay").await;
    let job = account_job(&zuora).await;
    let pending = relay_file(&zuora, &bucket, "Account/known.csv", job.batches[0].file_ids()[0]).await.unwrap();
    let bytes = pending.bytes;
    let published = pending.complete().await.unwrap();
    assert_eq!(published.parts as u64, bytes.div_ceil(5 * MIB));
    assert_eq!(Some(bucket.records_in("Account/known.csv").await), job.batches[0].record_count);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_file_is_caught_by_the_count_and_aborting_leaves_nothing() {
    let (sim, zuora) = sim_with_accounts(40_000, false).await;
    let bucket = Bucket::create("relay").await;
    let job = account_job(&zuora).await;
    sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        truncate_after_bytes: Some(2 * MIB),
        times: Some(1),
        ..FaultRule::default()
    }]);
    let pending = relay_file(&zuora, &bucket, "Account/short.csv", job.batches[0].file_ids()[0]).await.unwrap();
    assert!(Some(pending.counter.data_records()) < job.batches[0].record_count, "the cut shows in the count");
    pending.abort().await.unwrap();
    assert_eq!(bucket.open_uploads().await, 0);
    assert!(bucket.get("Account/short.csv").await.is_none(), "nothing published");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_reset_mid_download_aborts_the_upload() {
    let (sim, zuora) = sim_with_accounts(40_000, false).await;
    let bucket = Bucket::create("relay").await;
    let job = account_job(&zuora).await;
    sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        reset_after_bytes: Some(6 * MIB),
        times: Some(1),
        ..FaultRule::default()
    }]);
    let err = relay_file(&zuora, &bucket, "Account/reset.csv", job.batches[0].file_ids()[0]).await.err().unwrap();
    assert!(matches!(&err, RelayError::Source(e) if e.is_retryable()), "{err}");
    assert_eq!(bucket.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_failure_mid_upload_aborts_the_upload() {
    let (_sim, zuora) = sim_with_accounts(100_000, false).await;
    let bucket = Arc::new(Bucket::create("relay").await);
    let job = account_job(&zuora).await;
    let stream = zuora.download(job.batches[0].file_ids()[0]).await.unwrap();
    // After 6 MiB (the second part filling) the upload disappears under the relay, as a lifecycle rule would.
    let saboteur = bucket.clone();
    let mut seen = 0u64;
    let sabotaged = stream.then(move |chunk| {
        let saboteur = saboteur.clone();
        let before = seen;
        seen += chunk.as_ref().map_or(0, |c| c.len() as u64);
        let crossing = before < 6 * MIB && seen >= 6 * MIB;
        async move {
            if crossing {
                saboteur.abort_every_upload().await;
            }
            chunk
        }
    });
    let destination =
        Destination { bucket: bucket.name.clone(), key: "Account/broken.csv".into(), content_type: "text/csv".into() };
    let pool = PartPool::new(16 * MIB, 5 * MIB);
    let result =
        relay(Box::pin(sabotaged), None, &bucket.store(), &destination, &pool, &settings(), &Arc::default()).await;
    let err = match result {
        Ok(pending) => pending.complete().await.expect_err("the upload is gone"),
        Err(err) => err,
    };
    assert!(matches!(err, RelayError::Store(_)), "{err}");
    assert_eq!(bucket.open_uploads().await, 0);
    assert!(bucket.get("Account/broken.csv").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_files_round_trip_to_the_exact_bytes_zuora_sent() {
    use std::io::Read;
    let (_sim, zuora) = sim_with_accounts(250_000, false).await;
    let bucket = Bucket::create("relay").await;
    let job = account_job(&zuora).await;
    let file_id = job.batches[0].file_ids()[0];
    let original = downloaded(&zuora, file_id).await;
    for compression in [Compression::Gzip(1), Compression::Zstd(1)] {
        let key = format!("Account/full.csv{}", compression.extension());
        let destination = Destination {
            bucket: bucket.name.clone(),
            key: key.clone(),
            content_type: compression.content_type().into(),
        };
        let settings = RelaySettings { compression, ..settings() };
        let stream = zuora.download(file_id).await.unwrap();
        let pool = PartPool::new(16 * MIB, 5 * MIB);
        let pending =
            relay(stream, None, &bucket.store(), &destination, &pool, &settings, &Arc::default()).await.unwrap();
        assert_eq!(Some(pending.counter.data_records()), job.batches[0].record_count, "counted before compression");
        let published = pending.complete().await.unwrap();
        assert!(published.parts >= 2, "{compression:?}: {} parts", published.parts);
        let stored = bucket.object(&key).await;
        assert_eq!(stored.len() as u64, published.bytes);
        assert!(stored.len() < original.len() / 2, "{compression:?}: {} of {}", stored.len(), original.len());
        let mut restored = Vec::new();
        match compression {
            Compression::Gzip(_) => {
                flate2::read::MultiGzDecoder::new(stored.as_ref()).read_to_end(&mut restored).unwrap();
            }
            _ => restored = zstd::stream::decode_all(stored.as_ref()).unwrap(),
        }
        assert!(restored == original, "{compression:?}: the decompressed object differs from the file");
    }
    assert_eq!(bucket.open_uploads().await, 0);
}

/// Garage checks what moto lets through: every part must carry the checksum of the algorithm the upload was
/// created with, and the completion must name the same one.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (Garage)"]
async fn a_stricter_s3_server_accepts_every_part_and_completion_for_both_checksums() {
    let (sim, zuora) = sim_with_accounts(120_000, false).await;
    let bucket = Bucket::create_strict("relay-strict").await;
    let store = bucket.store();
    let job = account_job(&zuora).await;
    let (file_id, expected) = (job.batches[0].file_ids()[0], job.batches[0].record_count);
    for checksum in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc64Nvme] {
        let key = format!("Account/{checksum:?}.csv");
        let destination =
            Destination { bucket: bucket.name.clone(), key: key.clone(), content_type: "text/csv".into() };
        let settings = RelaySettings { checksum, ..settings() };
        let stream = zuora.download(file_id).await.unwrap();
        let pool = PartPool::new(16 * MIB, 5 * MIB);
        let pending = relay(stream, None, &store, &destination, &pool, &settings, &Arc::default()).await.unwrap();
        let published = pending.complete().await.unwrap();
        assert!(published.parts > 3, "{} parts", published.parts);
        let body = bucket.object(&key).await;
        assert_eq!(published.checksum, checksum.encode(checksum.of(&[body])), "{checksum:?}");
        assert_eq!(Some(bucket.records_in(&key).await), expected);
        store.copy(&bucket.name, &key, "Account.csv").await.unwrap();
        assert_eq!(Some(bucket.records_in("Account.csv").await), expected, "server-side copy");
    }
    sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        truncate_after_bytes: Some(7 * MIB),
        times: Some(1),
        ..FaultRule::default()
    }]);
    let destination =
        Destination { bucket: bucket.name.clone(), key: "Account/cut.csv".into(), content_type: "text/csv".into() };
    let stream = zuora.download(file_id).await.unwrap();
    let pool = PartPool::new(16 * MIB, 5 * MIB);
    let pending = relay(stream, None, &store, &destination, &pool, &settings(), &Arc::default()).await.unwrap();
    assert!(Some(pending.counter.data_records()) < expected);
    pending.abort().await.unwrap();
    assert_eq!(bucket.open_uploads().await, 0, "aborted on the strict server too");
}

async fn downloaded(zuora: &ZuoraClient, file_id: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut stream = zuora.download(file_id).await.unwrap();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_file_is_counted_as_it_decompresses_and_stored_as_sent_or_decompressed() {
    use std::io::Read;
    let (sim, zuora) = sim_with_accounts(150_000, false).await;
    let bucket = Bucket::create("relay-gzip").await;
    let job = account_job_as(&zuora, "gzip").await;
    assert!(job.is_gzip(), "{:?}", job.format);
    let (file_id, expected) = (job.batches[0].file_ids()[0], job.batches[0].record_count);
    let sent = downloaded(&zuora, file_id).await;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(sent.as_slice()).read_to_end(&mut plain).unwrap();
    assert!(sent.len() * 2 < plain.len(), "gzip on the wire: {} of {} bytes", sent.len(), plain.len());
    for (compression, stored_as) in [(Compression::GzipAsSent, &sent), (Compression::None, &plain)] {
        let key = format!("Account/{compression:?}.csv{}", compression.extension());
        let destination = Destination {
            bucket: bucket.name.clone(),
            key: key.clone(),
            content_type: compression.content_type().into(),
        };
        let settings = RelaySettings { compression, gzip_source: true, ..settings() };
        let stream = zuora.download(file_id).await.unwrap();
        let pool = PartPool::new(16 * MIB, 5 * MIB);
        let pending = relay(stream, None, &bucket.store(), &destination, &pool, &settings, &Arc::default()).await;
        let pending = pending.unwrap();
        assert_eq!(Some(pending.counter.data_records()), expected, "{compression:?}: counted decompressed");
        let published = pending.complete().await.unwrap();
        assert!(published.parts >= 2, "{compression:?}: {} parts", published.parts);
        assert!(bucket.object(&key).await == stored_as.as_slice(), "{compression:?}: the stored bytes");
    }
    // Cut short (the body ends cleanly, inside the gzip stream): the decompressor says so and nothing is left.
    sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        truncate_after_bytes: Some(sent.len() as u64 / 2),
        times: Some(1),
        ..FaultRule::default()
    }]);
    let destination =
        Destination { bucket: bucket.name.clone(), key: "Account/cut.csv.gz".into(), content_type: "x".into() };
    let settings = RelaySettings { compression: Compression::GzipAsSent, gzip_source: true, ..settings() };
    let stream = zuora.download(file_id).await.unwrap();
    let pool = PartPool::new(16 * MIB, 5 * MIB);
    let err = relay(stream, None, &bucket.store(), &destination, &pool, &settings, &Arc::default()).await.err();
    assert!(matches!(err, Some(RelayError::BadGzip(_))), "{err:?}");
    assert_eq!(bucket.open_uploads().await, 0);
    assert!(bucket.get("Account/cut.csv.gz").await.is_none());
}
