//! Compression of a file as independent members: each chunk becomes a complete gzip member or zstd frame, so
//! chunks compress in parallel, and the concatenation is a valid gzip file (RFC 1952) or zstd stream that any
//! reader decompresses whole.

use common::config::CompressionKind;
use std::io::Write;

/// How stored files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as Zuora sent it.
    None,
    /// gzip, level 0-9.
    Gzip(u32),
    /// zstd, level 1-19.
    Zstd(i32),
    /// The gzip file Zuora sent (`format: gzip`), stored as it came.
    GzipAsSent,
}

impl Compression {
    /// The configuration's `compression` at `compression_level` (1 when absent; clamped to the format's range).
    pub fn from_config(kind: CompressionKind, level: Option<i32>) -> Self {
        match kind {
            CompressionKind::None => Self::None,
            CompressionKind::Gzip => Self::Gzip(level.unwrap_or(1).clamp(0, 9) as u32),
            CompressionKind::Zstd => Self::Zstd(level.unwrap_or(1).clamp(1, 19)),
        }
    }

    /// The name written in metadata and completion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip(_) | Self::GzipAsSent => "gzip",
            Self::Zstd(_) => "zstd",
        }
    }

    /// The key suffix of stored files.
    pub fn extension(&self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip(_) | Self::GzipAsSent => ".gz",
            Self::Zstd(_) => ".zst",
        }
    }

    /// The stored object's content type.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::None => "text/csv; charset=utf-8",
            Self::Gzip(_) | Self::GzipAsSent => "application/gzip",
            Self::Zstd(_) => "application/zstd",
        }
    }

    /// One chunk as a complete member. CPU-bound: run it on a blocking thread.
    pub fn member(&self, chunk: &[u8]) -> std::io::Result<Vec<u8>> {
        match *self {
            Self::None | Self::GzipAsSent => Ok(chunk.to_vec()),
            Self::Gzip(level) => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::with_capacity(chunk.len() / 4), flate2::Compression::new(level));
                encoder.write_all(chunk)?;
                encoder.finish()
            }
            Self::Zstd(level) => zstd::bulk::compress(chunk, level),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn concatenated_members_decompress_to_the_whole_input() {
        let parts: [&[u8]; 3] = [b"a,b\n1,\"x\ny\"\n", b"2,z\n", b""];
        for compression in [Compression::Gzip(1), Compression::Zstd(3)] {
            let stored: Vec<u8> = parts.iter().flat_map(|p| compression.member(p).unwrap()).collect();
            let mut whole = Vec::new();
            match compression {
                Compression::Gzip(_) => {
                    flate2::read::MultiGzDecoder::new(stored.as_slice()).read_to_end(&mut whole).unwrap();
                }
                _ => whole = zstd::stream::decode_all(stored.as_slice()).unwrap(),
            }
            assert_eq!(whole, parts.concat(), "{compression:?}");
        }
        assert_eq!(Compression::from_config(CompressionKind::Gzip, Some(42)), Compression::Gzip(9));
        assert_eq!(Compression::from_config(CompressionKind::Zstd, None), Compression::Zstd(1));
    }
}
