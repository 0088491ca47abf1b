//! A gzip file decompressed as it streams past: files Zuora sends gzip-compressed (`format: gzip`) are counted
//! and checked as the CSV inside them, and stored either as they came or as that CSV.

use async_compression::tokio::write::GzipDecoder;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

/// The decompressor of one gzip file, fed its bytes in order.
pub struct Gunzip {
    decoder: GzipDecoder<Vec<u8>>,
}

impl Default for Gunzip {
    fn default() -> Self {
        Self { decoder: GzipDecoder::new(Vec::new()) }
    }
}

impl Gunzip {
    /// The plain bytes that `chunk` of the file completes. Fails on bytes that are not gzip, a member whose CRC or
    /// length does not match, or bytes after the file's end.
    pub async fn feed(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        self.decoder.write_all(chunk).await?;
        self.decoder.flush().await?;
        Ok(self.take())
    }

    /// The last plain bytes, once the file has ended. Fails when it ended before its gzip trailer: cut short.
    pub async fn finish(&mut self) -> std::io::Result<Bytes> {
        self.decoder.shutdown().await?;
        Ok(self.take())
    }

    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.decoder.get_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    async fn gunzip_in_pieces(file: &[u8], piece: usize) -> std::io::Result<Vec<u8>> {
        let mut gunzip = Gunzip::default();
        let mut plain = Vec::new();
        for chunk in file.chunks(piece) {
            plain.extend_from_slice(&gunzip.feed(chunk).await?);
        }
        plain.extend_from_slice(&gunzip.finish().await?);
        Ok(plain)
    }

    #[tokio::test]
    async fn a_file_in_any_pieces_decompresses_to_its_bytes_and_a_cut_or_damaged_one_fails() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{i},\"a, \"\"b\"\"\n\",x\n").into_bytes()).collect();
        let file = gzip(&data);
        for piece in [1, 7, 4096, file.len()] {
            assert!(gunzip_in_pieces(&file, piece).await.unwrap() == data, "pieces of {piece}");
        }
        let cut = gunzip_in_pieces(&file[..file.len() - 5], 4096).await;
        assert!(cut.is_err(), "a file cut inside its trailer");
        let mut damaged = file.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x55;
        assert!(gunzip_in_pieces(&damaged, 4096).await.is_err(), "a flipped byte");
        let mut trailing = file.clone();
        trailing.extend_from_slice(b"garbage");
        assert!(gunzip_in_pieces(&trailing, 4096).await.is_err(), "bytes after the end");
        assert!(gunzip_in_pieces(b"Account.Id\n1\n", 4096).await.is_err(), "not gzip");
    }
}
