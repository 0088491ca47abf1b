//! The file being read into parts: Zuora's body, counted as it passes (a gzip file as it decompresses), with the
//! bytes read past the last part carried to the next.

use super::compress::Compression;
use super::gunzip::Gunzip;
use super::pool::PartSlot;
use super::{RelayError, RelaySettings};
use bytes::Bytes;
use common::csv_count::RecordCounter;
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
    /// Bytes of a gzip file read and not yet decompressed (when what is stored is the decompressed file).
    compressed: Bytes,
}

/// Bytes of a gzip file decompressed at once. Deflate expands at most about 1,032 times, so one step gives at most
/// about 4 MiB whatever the file (a file of zeros, a gzip bomb): the memory outside the part pool stays bounded.
pub(super) const GUNZIP_STEP: usize = 4 * 1024;

impl<S, E> Input<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    RelayError: From<E>,
{
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
            compressed: Bytes::new(),
        }
    }

    /// True when the bytes stored are the bytes read (not decompressed on the way).
    pub(super) fn stores_what_it_reads(&self) -> bool {
        !self.store_decompressed
    }

    /// The next bytes to store, counted; `None` at the file's end.
    async fn next_counted(&mut self) -> Result<Option<Bytes>, RelayError> {
        if self.gunzip.is_none() {
            let read = self.read().await?;
            if let Some(chunk) = &read {
                self.counter.feed(chunk);
            }
            return Ok(read);
        }
        if !self.store_decompressed {
            // Stored as sent: the chunk read is what is stored; what it decompresses to is only counted.
            let read = self.read().await?;
            match &read {
                Some(chunk) => {
                    for step in chunk.chunks(GUNZIP_STEP) {
                        let plain = self.gunzip_step(step).await?;
                        self.counter.feed(&plain);
                    }
                }
                None => {
                    let plain = self.gunzip_finish().await?;
                    self.counter.feed(&plain);
                }
            }
            return Ok(read);
        }
        // Stored decompressed: what a step of the file decompresses to is the next bytes to store.
        loop {
            if !self.compressed.is_empty() {
                let step = self.compressed.split_to(self.compressed.len().min(GUNZIP_STEP));
                let plain = self.gunzip_step(&step).await?;
                self.counter.feed(&plain);
                if !plain.is_empty() {
                    return Ok(Some(plain));
                }
                continue;
            }
            if self.source_ended {
                return Ok(None);
            }
            match self.read().await? {
                Some(chunk) => self.compressed = chunk,
                None => {
                    let plain = self.gunzip_finish().await?;
                    self.counter.feed(&plain);
                    return Ok(Some(plain).filter(|p| !p.is_empty()));
                }
            }
        }
    }

    /// The file's next chunk as read; `None` once it has ended (the stream is not polled again).
    async fn read(&mut self) -> Result<Option<Bytes>, RelayError> {
        if self.source_ended {
            return Ok(None);
        }
        let read = self.stream.next().await.transpose().map_err(RelayError::from)?;
        self.source_ended = read.is_none();
        Ok(read)
    }

    /// What `step` of a gzip file decompresses to.
    async fn gunzip_step(&mut self, step: &[u8]) -> Result<Bytes, RelayError> {
        match self.gunzip.as_mut() {
            Some(gunzip) => gunzip.feed(step).await.map_err(RelayError::BadGzip),
            None => Ok(Bytes::copy_from_slice(step)),
        }
    }

    /// The last bytes of a gzip file, once it has ended.
    async fn gunzip_finish(&mut self) -> Result<Bytes, RelayError> {
        match self.gunzip.as_mut() {
            Some(gunzip) => gunzip.finish().await.map_err(RelayError::BadGzip),
            None => Ok(Bytes::new()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use common::store::ChecksumAlgorithm;
    use common::zuora::ZuoraError;
    use std::io::Write;

    fn settings(compression: Compression) -> RelaySettings {
        RelaySettings {
            part_size: 5 << 20,
            max_part_size: 5 << 20,
            checksum: ChecksumAlgorithm::Crc32c,
            compression,
            gzip_source: true,
        }
    }

    /// A gzip file of `header` then `rows` lines of a thousand zeros: a few hundred KB that decompress to about
    /// `rows` KB.
    fn zeros_gzip(rows: usize) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(b"Account.Id\n").unwrap();
        let row = [b"0".repeat(1000), b"\n".to_vec()].concat();
        for _ in 0..rows {
            encoder.write_all(&row).unwrap();
        }
        encoder.finish().unwrap()
    }

    #[tokio::test]
    async fn a_gzip_file_of_zeros_is_decompressed_in_bounded_pieces_and_counted_whole() {
        let rows = 64 * 1024;
        let file = zeros_gzip(rows);
        assert!(file.len() < 512 * 1024, "a gzip bomb of its kind: {} bytes", file.len());
        for compression in [Compression::None, Compression::GzipAsSent] {
            let chunks: Vec<Result<Bytes, ZuoraError>> =
                file.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            let mut input = Input::new(futures::stream::iter(chunks), &settings(compression));
            let (mut stored, mut largest) = (0usize, 0usize);
            while let Some(piece) = input.next_counted().await.unwrap() {
                stored += piece.len();
                largest = largest.max(piece.len());
            }
            assert_eq!(input.counter.data_records(), rows as u64, "{compression:?}");
            if compression == Compression::GzipAsSent {
                assert_eq!(stored, file.len(), "stored as sent");
            } else {
                assert_eq!(stored, 11 + rows * 1001, "stored decompressed");
                // Each 64 KiB read would decompress to about 64 MiB at once: pieces stay within a few MiB.
                assert!(largest <= 5 << 20, "a piece of {largest} bytes outside the part pool");
            }
        }
    }
}
