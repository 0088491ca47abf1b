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

/// The same report for automation: one JSON document (docs/operations.md, "Automation").
pub fn json(statuses: &[ObjectStatus], now: DateTime<Utc>, stale_after_hours: u64) -> serde_json::Value {
    let objects: Vec<serde_json::Value> = statuses
        .iter()
        .map(|status| {
            let mut object = serde_json::json!({"object": status.object, "stale": status.stale});
            if let Some(mark) = &status.last {
                object["dataUntil"] = serde_json::json!(mark.data_until());
                object["ageSeconds"] = serde_json::json!((now - mark.data_until()).num_seconds());
                object["jobId"] = serde_json::json!(mark.job_id);
                object["kind"] = serde_json::json!(mark.kind);
                object["file"] = serde_json::json!(format!("s3://{}/{}", mark.bucket, mark.key));
            }
            object
        })
        .collect();
    serde_json::json!({
        "at": now,
        "staleAfterHours": stale_after_hours,
        "stale": statuses.iter().filter(|s| s.stale).count(),
        "objects": objects,
    })
}

/// The embedded-metric line of a check: how many objects are stale, of how many (no dimension). The stack's
/// staleness alarm reads `StaleObjects`; a check that did not run leaves no value, which the alarm also treats as
/// stale.
pub fn emf_line(statuses: &[ObjectStatus], now: DateTime<Utc>) -> String {
    let stale = statuses.iter().filter(|s| s.stale).count();
    common::metrics::emf_line(
        now,
        &[],
        &[("StaleObjects", "Count", stale as f64), ("Objects", "Count", statuses.len() as f64)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::messages::{JobKind, Window};
    use common::store::LocalStore;
    use std::sync::Arc;

    /// A ledger in a temporary directory holding one increment of Account, its window ending at `to`, published at
    /// `published_at`.
    async fn ledger_with_account(to: DateTime<Utc>, published_at: DateTime<Utc>) -> (tempfile::TempDir, Ledger) {
        let root = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(Arc::new(LocalStore::new(root.path())), "lake", "ledger/");
        let mark = PublishedMark {
            object: "Account".into(),
            job_id: "2c92c0f966cd4f580166ec0ac89d5bb7".into(),
            window: Window { from: None, to },
            executed_at: published_at,
            published_at,
            bucket: "lake".into(),
            key: "Account/x.csv".into(),
            segment: 0,
            segments: 1,
            kind: Some(JobKind::Increment),
        };
        ledger.marks().record(&mark).await.unwrap();
        (root, ledger)
    }

    #[tokio::test]
    async fn a_window_claiming_to_end_in_the_future_goes_stale_counted_from_when_it_was_published() {
        let published_at: DateTime<Utc> = "2026-11-01T06:00:00Z".parse().unwrap();
        let (_root, ledger) = ledger_with_account("2099-01-01T00:00:00Z".parse().unwrap(), published_at).await;
        let catalogue = Catalogue { objects: vec![Catalogue::builtin().objects[0].clone()] };
        let day = chrono::Duration::hours(36);
        let fresh = object_statuses(&ledger, &catalogue, published_at + chrono::Duration::hours(1), day).await.unwrap();
        assert!(!fresh[0].stale);
        let later = object_statuses(&ledger, &catalogue, published_at + chrono::Duration::days(3), day).await.unwrap();
        assert!(later[0].stale, "a mark claiming 2099 goes stale like any other");
        assert!(render(&later, published_at + chrono::Duration::days(3)).contains("72h"));
    }

    #[tokio::test]
    async fn the_json_report_and_the_metric_line_say_which_objects_are_stale() {
        let to: DateTime<Utc> = "2026-11-01T06:00:00Z".parse().unwrap();
        let (_root, ledger) = ledger_with_account(to, to).await;
        let catalogue = Catalogue { objects: Catalogue::builtin().objects[..2].to_vec() };
        let now = to + chrono::Duration::hours(2);
        let statuses = object_statuses(&ledger, &catalogue, now, chrono::Duration::hours(36)).await.unwrap();
        let report = json(&statuses, now, 36);
        assert_eq!(report["stale"], 1);
        assert_eq!(report["objects"][0]["object"], "Account");
        assert_eq!(report["objects"][0]["stale"], false);
        assert_eq!(report["objects"][0]["ageSeconds"], 7200);
        assert_eq!(report["objects"][0]["kind"], "increment");
        assert_eq!(report["objects"][0]["file"], "s3://lake/Account/x.csv");
        let never = &report["objects"][1];
        assert_eq!((never["stale"].as_bool(), never.get("dataUntil")), (Some(true), None), "{never}");
        let line: serde_json::Value = serde_json::from_str(&emf_line(&statuses, now)).unwrap();
        assert_eq!((line["StaleObjects"].as_f64(), line["Objects"].as_f64()), (Some(1.0), Some(2.0)));
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([[]]));
    }
}
