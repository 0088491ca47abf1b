//! The file being read into parts: Zuora's body, counted as it passes (a gzip file as it decompresses), with the
//! bytes read past the last part carried to the next.

use super::compress::Compression;
use super::gunzip::Gunzip;
use super::pool::PartSlot;
use super::{RelayError, RelaySettings};
use bytes::Bytes;
use common::csv_count::RecordCounter;
use common::zuora::ZuoraError;
use futures::{Stream, StreamExt};

/// The file being read: its stream, the bytes read past the last part, and the record count of everything read.
pub(super) struct Input<S> {
    stream: S,
    carry: Option<Bytes>,
    ended: bool,
    pub(super) counter: RecordCounter,
    /// A gzip file's decompressor: the counter reads what it gives.
    gunzip: Option<Gunzip>,
    /// What is stored is the decompressed file, not the bytes read.
    store_decompressed: bool,
    /// The stream has ended (it is not polled again).
    source_ended: bool,
}

impl<S: Stream<Item = Result<Bytes, ZuoraError>> + Unpin> Input<S> {
    pub(super) fn new(stream: S, settings: &RelaySettings) -> Self {
        let gunzip = settings.gzip_source.then(Gunzip::default);
        let store_decompressed = settings.gzip_source && settings.compression != Compression::GzipAsSent;
        Self {
            stream,
            carry: None,
            ended: false,
            counter: RecordCounter::new(),
            gunzip,
            store_decompressed,
            source_ended: false,
        }
    }

    /// True when the bytes stored are the bytes read (not decompressed on the way).
    pub(super) fn stores_what_it_reads(&self) -> bool {
        !self.store_decompressed
    }

    /// The next bytes to store, counted; `None` at the file's end.
    async fn next_counted(&mut self) -> Result<Option<Bytes>, RelayError> {
        loop {
            if self.source_ended {
                return Ok(None);
            }
            let read = self.stream.next().await.transpose()?;
            self.source_ended = read.is_none();
            let Some(gunzip) = self.gunzip.as_mut() else {
                if let Some(chunk) = &read {
                    self.counter.feed(chunk);
                }
                return Ok(read);
            };
            let plain = match &read {
                Some(chunk) => gunzip.feed(chunk).await,
                None => gunzip.finish().await,
            };
            let plain = plain.map_err(RelayError::BadGzip)?;
            self.counter.feed(&plain);
            if !self.store_decompressed {
                return Ok(read);
            }
            if !plain.is_empty() || read.is_none() {
                return Ok(Some(plain).filter(|p| !p.is_empty()));
            }
        }
    }

    /// Reads into `slot` until it holds `size` bytes or the file ends; every byte read is counted once.
    pub(super) async fn fill(&mut self, slot: &mut PartSlot, size: u64) -> Result<(), RelayError> {
        while (slot.len() as u64) < size && !self.ended {
            let mut chunk = match self.carry.take() {
                Some(chunk) => chunk,
                None => match self.next_counted().await? {
                    Some(chunk) => chunk,
                    None => {
                        self.ended = true;
                        break;
                    }
                },
            };
            let room = size as usize - slot.len();
            if chunk.len() > room {
                self.carry = Some(chunk.split_off(room));
            }
            slot.extend_from_slice(&chunk);
        }
        Ok(())
    }

    /// True once the whole file has been read into slots.
    pub(super) fn is_done(&self) -> bool {
        self.ended && self.carry.is_none()
    }
}
