//! The part buffers: a fixed set of equal chunks, allocated (and touched) once when the process starts and
//! shared by every upload of the process, so that memory is the pool whatever the size of the files.
//!
//! A part takes as many chunks as its size needs (one at the first part size, more once parts grow), as permits,
//! *before* any byte of it is read: when the pool is spent the download waits (its TCP window closes) instead of
//! memory growing. Chunks come back after their part is uploaded and are reused.

use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pool: `chunks` chunks of `unit` bytes.
pub struct PartPool {
    unit: usize,
    chunks: u32,
    permits: Arc<Semaphore>,
    free: Mutex<Vec<BytesMut>>,
}

/// Room for one part: its chunks and the permits that pay for them.
pub struct PartSlot {
    chunks: Vec<BytesMut>,
    unit: usize,
    len: usize,
    _permits: OwnedSemaphorePermit,
}

/// A filled part, ready to upload: its chunks, frozen, and its permits if it came from the pool (held until the
/// upload ends).
pub struct FrozenPart {
    /// The bytes, in order.
    pub chunks: Vec<Bytes>,
    /// Total bytes.
    pub len: u64,
    permits: Option<OwnedSemaphorePermit>,
}

impl FrozenPart {
    /// A part of bytes the pool does not own (compressed members).
    pub fn unpooled(chunks: Vec<Bytes>) -> Self {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Self { chunks, len, permits: None }
    }

    /// Gives pooled chunks back to the pool, with their permits.
    pub fn release(self, pool: &PartPool) {
        if self.permits.is_some() {
            pool.give_back(self.chunks);
        }
    }
}

impl PartSlot {
    /// Bytes in the slot.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes, filling the chunks in order. Past the slot's chunks (a compressed member a little larger than
    /// its input) a chunk outside the pool is allocated.
    pub fn extend_from_slice(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let index = self.len / self.unit;
            if index >= self.chunks.len() {
                self.chunks.push(BytesMut::with_capacity(self.unit));
            }
            let chunk = &mut self.chunks[index];
            let take = (self.unit - chunk.len()).min(bytes.len());
            chunk.extend_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
        }
    }

    /// The first chunk's bytes (a slot of one chunk is contiguous).
    pub fn first_chunk(&self) -> &[u8] {
        self.chunks.first().map_or(&[], |c| c.as_ref())
    }

    /// Freezes the written chunks for upload.
    pub fn freeze(self) -> FrozenPart {
        let len = self.len as u64;
        let chunks = self.chunks.into_iter().filter(|c| !c.is_empty()).map(BytesMut::freeze).collect();
        FrozenPart { chunks, len, permits: Some(self._permits) }
    }
}

impl PartPool {
    /// A pool of `budget` bytes in chunks of `unit` bytes (the first part size), all allocated and touched now.
    pub fn new(budget: u64, unit: u64) -> Arc<Self> {
        let unit = unit.max(1) as usize;
        let chunks = (budget as usize / unit).clamp(1, (u32::MAX >> 3) as usize) as u32;
        let free = (0..chunks)
            .map(|_| {
                // Written once so the memory is resident from the start, not when the first large file arrives.
                let mut chunk = BytesMut::with_capacity(unit);
                chunk.resize(unit, 0xA5);
                chunk.clear();
                chunk
            })
            .collect();
        Arc::new(Self { unit, chunks, permits: Arc::new(Semaphore::new(chunks as usize)), free: Mutex::new(free) })
    }

    /// The largest part the pool can hold.
    pub fn max_part(&self) -> u64 {
        self.unit as u64 * u64::from(self.chunks)
    }

    /// Waits for room for a part of `size` bytes (at most [`PartPool::max_part`]).
    pub async fn slot(&self, size: u64) -> PartSlot {
        let wanted = (size.div_ceil(self.unit as u64)).clamp(1, u64::from(self.chunks)) as u32;
        #[allow(clippy::expect_used)]
        let permits =
            self.permits.clone().acquire_many_owned(wanted).await.expect("the pool's semaphore is never closed");
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let chunks = (0..wanted).map(|_| free.pop().unwrap_or_else(|| BytesMut::with_capacity(self.unit))).collect();
        PartSlot { chunks, unit: self.unit, len: 0, _permits: permits }
    }

    /// Takes chunks back for reuse (those nothing else still holds; the pool never keeps more than its size).
    fn give_back(&self, chunks: Vec<Bytes>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        for chunk in chunks {
            if let Ok(mut chunk) = chunk.try_into_mut()
                && chunk.capacity() >= self.unit
                && free.len() < self.chunks as usize
            {
                chunk.clear();
                free.push(chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_part_waits_until_the_pool_has_room_and_chunks_are_reused() {
        let pool = PartPool::new(4 * 8, 8);
        let a = pool.slot(16).await;
        let b = pool.slot(16).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), pool.slot(8)).await;
        assert!(waiting.is_err(), "no room while two double parts are held");
        let mut a = a;
        a.extend_from_slice(b"0123456789abcdef");
        assert_eq!(a.len(), 16);
        let frozen = a.freeze();
        assert_eq!(frozen.chunks.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), [&b"01234567"[..], &b"89abcdef"[..]]);
        frozen.release(&pool);
        let c = tokio::time::timeout(Duration::from_millis(50), pool.slot(8)).await.expect("room again");
        assert_eq!(c.len(), 0);
        drop(b);
        assert_eq!(pool.max_part(), 32);
    }

    #[test]
    fn a_slot_spills_past_its_chunks_instead_of_losing_bytes() {
        let pool = PartPool::new(8, 4);
        let mut slot = futures::executor::block_on(pool.slot(4));
        slot.extend_from_slice(b"abcdefghij");
        assert_eq!(slot.len(), 10);
        assert_eq!(slot.freeze().chunks.concat(), b"abcdefghij");
    }
}
