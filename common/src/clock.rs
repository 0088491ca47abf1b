//! Wall-clock time for the services. In production it is the system's; the chaos harness runs simulated days in
//! seconds on Tokio's paused clock, so there the services read a clock that moves with Tokio's.

use chrono::{DateTime, Utc};

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's clock.
    #[default]
    System,
    /// `start` at the Tokio instant `anchor`, moving with Tokio's clock (paused in tests, where it jumps).
    Tokio {
        /// The wall-clock time at `anchor`.
        start: DateTime<Utc>,
        /// The Tokio instant that reads `start`.
        anchor: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `start` now and moves with Tokio's clock.
    pub fn following_tokio(start: DateTime<Utc>) -> Self {
        Self::Tokio { start, anchor: tokio::time::Instant::now() }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Tokio { start, anchor } => {
                *start + chrono::Duration::from_std(anchor.elapsed()).unwrap_or(chrono::TimeDelta::MAX)
            }
        }
    }
}
