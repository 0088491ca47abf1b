//! The part buffers: a fixed memory budget, shared by every upload of the process.
//!
//! A part takes permits worth its size *before* any byte of it is read, so when the budget is spent the download
//! waits (its TCP window closes) instead of memory growing. Buffers are handed back after their part is uploaded
//! and reused, so the allocator is not asked for fresh megabytes per part.

use bytes::BytesMut;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget, in units of `unit` bytes.
pub struct PartPool {
    unit: u64,
    permits: Arc<Semaphore>,
    total_units: u32,
    free: Mutex<Vec<BytesMut>>,
}

/// Room for one part: the buffer and the permits that pay for it.
pub struct PartSlot {
    /// The part's bytes.
    pub buffer: BytesMut,
    _permits: OwnedSemaphorePermit,
}

impl PartPool {
    /// A budget of `budget` bytes counted in `unit`-byte permits (the base part size).
    pub fn new(budget: u64, unit: u64) -> Arc<Self> {
        let total_units = (budget / unit.max(1)).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Arc::new(Self {
            unit,
            permits: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            free: Mutex::new(Vec::new()),
        })
    }

    /// The largest part the budget can hold.
    pub fn max_part(&self) -> u64 {
        self.unit * u64::from(self.total_units)
    }

    /// Waits for room for a part of `size` bytes (at most [`PartPool::max_part`]).
    pub async fn slot(&self, size: u64) -> PartSlot {
        let units = size.div_ceil(self.unit).clamp(1, u64::from(self.total_units)) as u32;
        #[allow(clippy::expect_used)]
        let permits =
            self.permits.clone().acquire_many_owned(units).await.expect("the pool's semaphore is never closed");
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut buffer = reused.unwrap_or_default();
        buffer.clear();
        buffer.reserve(size as usize);
        PartSlot { buffer, _permits: permits }
    }

    /// Takes a buffer back for reuse, if nothing else holds it.
    pub fn give_back(&self, bytes: bytes::Bytes) {
        if let Ok(buffer) = bytes.try_into_mut() {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            if free.len() < self.total_units as usize {
                free.push(buffer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_part_waits_until_the_budget_has_room() {
        let pool = PartPool::new(4 * 8, 8);
        let a = pool.slot(16).await;
        let b = pool.slot(16).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), pool.slot(8)).await;
        assert!(waiting.is_err(), "no room while two double parts are held");
        drop(a);
        let c = tokio::time::timeout(Duration::from_millis(50), pool.slot(8)).await;
        assert!(c.is_ok());
        drop(b);
        assert_eq!(pool.max_part(), 32);
    }
}
