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
        let stale = last.as_ref().is_none_or(|mark| now - mark.data_until() > stale_after);
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
                mark.data_until().format("%Y-%m-%d %H:%M:%S"),
                (now - mark.data_until()).num_hours(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use common::messages::{JobKind, Window};
    use common::store::LocalStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_window_claiming_to_end_in_the_future_goes_stale_counted_from_when_it_was_published() {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(Arc::new(LocalStore::new(root.path())), "lake", "ledger/");
        let published_at: DateTime<Utc> = "2026-11-01T06:00:00Z".parse().unwrap();
        let mark = PublishedMark {
            object: "Account".into(),
            job_id: "2c92c0f966cd4f580166ec0ac89d5bb7".into(),
            window: Window { from: None, to: "2099-01-01T00:00:00Z".parse().unwrap() },
            executed_at: published_at,
            published_at,
            bucket: "lake".into(),
            key: "Account/x.csv".into(),
            segment: 0,
            segments: 1,
            kind: Some(JobKind::Increment),
        };
        ledger.marks().record(&mark).await.unwrap();
        let catalogue = Catalogue { objects: vec![Catalogue::builtin().objects[0].clone()] };
        let day = chrono::Duration::hours(36);
        let fresh = object_statuses(&ledger, &catalogue, published_at + chrono::Duration::hours(1), day).await.unwrap();
        assert!(!fresh[0].stale);
        let later = object_statuses(&ledger, &catalogue, published_at + chrono::Duration::days(3), day).await.unwrap();
        assert!(later[0].stale, "a mark claiming 2099 goes stale like any other");
        assert!(render(&later, published_at + chrono::Duration::days(3)).contains("72h"));
    }
}
