//! A published file read a batch of rows at a time: streamed from the store, decompressed and parsed on a blocking
//! thread, so that applying a file holds a few batches of it in memory, never the whole file.

use crate::error::ApplyError;
use crate::rows::{Layout, Refused, Rows};
use bytes::Bytes;
use common::messages::CompletionMessage;
use common::store::ObjectStore;
use futures::StreamExt;
use std::io::Read;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Rows read from a CSV at a time.
const BATCH_ROWS: usize = 64 * 1024;
/// Chunks and batches in flight between the reading task, the parser and the writer.
const IN_FLIGHT: usize = 4;

/// Where a file's bytes come from.
#[derive(Clone)]
pub enum FileSource {
    /// The store the file was published to, at the completion's bucket and key.
    Store(Arc<dyn ObjectStore>),
    /// The file's bytes as stored (tests).
    Bytes(Bytes),
}

/// A file being read: its batches, and what broke the read, if anything did.
pub struct Reading {
    batches: mpsc::Receiver<Result<Rows, Refused>>,
    broken: Arc<Mutex<Option<String>>>,
}

impl Reading {
    /// The next batch; `None` at the end of the file. A file that cannot be parsed is [`ApplyError::Refused`]; a
    /// read that broke (the store, the connection) is [`ApplyError::Table`], worth trying again.
    pub async fn next(&mut self) -> Option<Result<Rows, ApplyError>> {
        let next = self.batches.recv().await;
        let broken = self.broken.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (next, broken) {
            (_, Some(reason)) => Some(Err(ApplyError::table(reason))),
            (Some(rows), None) => Some(rows.map_err(ApplyError::from)),
            (None, None) => None,
        }
    }
}

impl FileSource {
    /// Starts reading the file of `completion` as `layout` says.
    pub async fn read(&self, completion: &CompletionMessage, layout: &Layout) -> Result<Reading, ApplyError> {
        let broken: Arc<Mutex<Option<String>>> = Arc::default();
        let (chunks_in, chunks_out) = mpsc::channel::<Bytes>(IN_FLIGHT);
        match self {
            Self::Bytes(bytes) => {
                let _ = chunks_in.send(bytes.clone()).await;
            }
            Self::Store(store) => {
                let at = format!("s3://{}/{}", completion.bucket, completion.key);
                let stream = store
                    .get_stream(&completion.bucket, &completion.key)
                    .await
                    .map_err(|e| ApplyError::table(format!("{at}: {e}")))?
                    .ok_or_else(|| ApplyError::table(format!("{at}: announced but missing")))?;
                let broken = broken.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            Ok(chunk) => {
                                if chunks_in.send(chunk).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                *broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{at}: {e}"));
                                return;
                            }
                        }
                    }
                });
            }
        }
        let (batches_in, batches) = mpsc::channel(IN_FLIGHT);
        let (layout, executed_at, compression) =
            (layout.clone(), completion.executed_at, completion.compression.clone());
        tokio::task::spawn_blocking(move || {
            let raw = ChunkReader { chunks: chunks_out, current: Bytes::new() };
            let decoded: Box<dyn Read> = match compression.as_str() {
                "gzip" => Box::new(flate2::read::MultiGzDecoder::new(raw)),
                "zstd" => match zstd::stream::read::Decoder::new(raw) {
                    Ok(decoder) => Box::new(decoder),
                    Err(e) => {
                        let _ = batches_in.blocking_send(Err(Refused(format!("zstd: {e}"))));
                        return;
                    }
                },
                "none" => Box::new(raw),
                other => {
                    let _ = batches_in.blocking_send(Err(Refused(format!("unknown compression {other:?}"))));
                    return;
                }
            };
            for rows in layout.read(decoded, executed_at, BATCH_ROWS) {
                if batches_in.blocking_send(rows).is_err() {
                    return;
                }
            }
        });
        Ok(Reading { batches, broken })
    }
}

/// The chunks a task receives from the store, as a blocking `Read` (for the parser's thread).
struct ChunkReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
