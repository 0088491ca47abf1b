//! The simulated clock: Tokio's time (real time, or paused test time) plus whatever tests advanced it by.

use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;
use tokio::time::Instant;

/// `start + real elapsed + advanced`.
pub struct SimClock {
    start: DateTime<Utc>,
    started: Instant,
    advanced: Mutex<Duration>,
}

impl SimClock {
    /// A clock reading `start` now.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { start, started: Instant::now(), advanced: Mutex::new(Duration::zero()) }
    }

    /// The simulated now.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = Duration::from_std(self.started.elapsed()).unwrap_or_default();
        self.start + elapsed + *self.advanced.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        *self.advanced.lock().unwrap_or_else(|e| e.into_inner()) += by;
        self.now()
    }
}
