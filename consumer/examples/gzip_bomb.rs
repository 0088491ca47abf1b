//! Peak memory of the relay on a gzip file that decompresses about a thousand times over: `GIB` GiB of CSV rows of
//! zeros (about 1 MiB of gzip per GiB), downloaded in 64 KiB chunks as Zuora's would be, decompressed and counted on
//! the way, stored decompressed in a local store under `DIR` (default: the system's temporary directory), with the
//! consumer's default part pool (96 MiB of 8 MiB parts). Measure it with `/usr/bin/time -v`:
//!
//! ```sh
//! cargo build --release -p consumer --example gzip_bomb
//! /usr/bin/time -v target/release/examples/gzip_bomb 1 /dev/shm    # "Maximum resident set size"
//! ```

use bytes::Bytes;
use common::store::{ChecksumAlgorithm, LocalStore, ObjectStore};
use consumer::relay::compress::Compression;
use consumer::relay::pool::PartPool;
use consumer::relay::{Destination, RelaySettings, UploadTracker, relay};
use std::io::Write;
use std::sync::Arc;

const MIB: u64 = 1024 * 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let gib: u64 = args.next().map_or(Ok(1), |a| a.parse())?;
    let dir = args.next().map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let row = [vec![b'0'; 1023], vec![b'\n']].concat();
    let rows = gib * 1024 * 1024;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(b"Account.Id\n")?;
    for _ in 0..rows {
        encoder.write_all(&row)?;
    }
    let file = encoder.finish()?;
    eprintln!("gzip file: {} bytes for {} bytes of CSV", file.len(), 11 + rows * 1024);

    let root = dir.join(format!("gzip-bomb-{:016x}", rand_suffix()));
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&root));
    let settings = RelaySettings {
        part_size: 8 * MIB,
        max_part_size: 64 * MIB,
        checksum: ChecksumAlgorithm::Crc32c,
        compression: Compression::None,
        gzip_source: true,
    };
    let pool = PartPool::new(96 * MIB, 8 * MIB);
    let chunks: Vec<Result<Bytes, common::zuora::ZuoraError>> =
        file.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let destination = Destination { bucket: "lake".into(), key: "zeros.csv".into(), content_type: "text/csv".into() };
    let started = std::time::Instant::now();
    let tracker = Arc::new(UploadTracker::default());
    let upload = relay(futures::stream::iter(chunks), None, &store, &destination, &pool, &settings, &tracker).await?;
    let records = upload.counter.data_records();
    let published = upload.complete().await?;
    println!(
        "records {records}, stored {} bytes in {} parts, {:.1} s",
        published.bytes,
        published.parts,
        started.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

/// A name of the run's own for its directory.
fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}
