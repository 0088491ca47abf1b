//! `producer status`: how fresh each object is in the lake.

use chrono::{DateTime, Utc};
use common::catalogue::Catalogue;
use common::ledger::{Ledger, LedgerError};
use common::marks::PublishedMark;
use std::fmt::Write;

/// One object's freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStatus {
    /// The object.
    pub object: String,
    /// Its latest published increment, if any.
    pub last: Option<PublishedMark>,
    /// True when it has none, or its data is older than the threshold.
    pub stale: bool,
}

/// The freshness of every catalogue object at `now`; stale past `stale_after`.
pub async fn object_statuses(
    ledger: &Ledger,
    catalogue: &Catalogue,
    now: DateTime<Utc>,
    stale_after: chrono::Duration,
) -> Result<Vec<ObjectStatus>, LedgerError> {
    let mut statuses = Vec::with_capacity(catalogue.objects.len());
    for object in &catalogue.objects {
        let last = ledger.marks().latest(&object.name).await?;
        let stale = last.as_ref().is_none_or(|mark| now - mark.window.to > stale_after);
        statuses.push(ObjectStatus { object: object.name.clone(), last, stale });
    }
    Ok(statuses)
}

/// A table for people: object, data up to, age, job, file, and STALE where it is.
pub fn render(statuses: &[ObjectStatus], now: DateTime<Utc>) -> String {
    let mut out = format!("{:<20} {:<22} {:>8}  {:<34} {}\n", "OBJECT", "DATA UP TO (UTC)", "AGE", "JOB", "FILE");
    for status in statuses {
        let flag = if status.stale { "  STALE" } else { "" };
        let line = match &status.last {
            Some(mark) => format!(
                "{:<20} {:<22} {:>7}h  {:<34} s3://{}/{}{flag}",
                status.object,
                mark.window.to.format("%Y-%m-%d %H:%M:%S"),
                (now - mark.window.to).num_hours(),
                mark.job_id,
                mark.bucket,
                mark.key
            ),
            None => format!("{:<20} {:<22} {:>8}  {:<34} -{flag}", status.object, "never exported", "-", "-"),
        };
        let _ = writeln!(out, "{line}");
    }
    out
}
