//! `producer status`: how fresh each object is in the lake.

use chrono::{DateTime, Utc};
use common::catalogue::Catalogue;
use common::ledger::{Ledger, LedgerError};
use common::marks::PublishedMark;
use common::zuora::{DELETED_ROWS_KEPT_DAYS, SESSION_RESET_IDLE_DAYS};
use std::fmt::Write;

/// `status` warns this many days before Zuora would start an idle session again.
const SESSION_IDLE_WARNING_DAYS: i64 = SESSION_RESET_IDLE_DAYS - 30;

/// One object's freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStatus {
    /// The object.
    pub object: String,
    /// Its latest published increment, if any.
    pub last: Option<PublishedMark>,
    /// True when it has none, or its data is older than the threshold.
    pub stale: bool,
    /// When its latest increment (the session's position) ended, if it had one.
    pub increment_until: Option<DateTime<Utc>>,
    /// True when that is longer ago than Zuora keeps deleted rows: the next increment cannot report the deletions
    /// older than that.
    pub deletions_at_risk: bool,
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
        let (last, increment) = ledger.marks().latest_and_increment(&object.name).await?;
        let stale = last.as_ref().is_none_or(|mark| now - mark.data_until() > stale_after);
        let increment_until = increment.map(|mark| mark.data_until());
        let deletions_at_risk =
            increment_until.is_some_and(|until| now - until > chrono::Duration::days(DELETED_ROWS_KEPT_DAYS));
        statuses.push(ObjectStatus { object: object.name.clone(), last, stale, increment_until, deletions_at_risk });
    }
    Ok(statuses)
}

/// Days since the session's last increment (of any object), if it had one.
pub fn session_idle_days(statuses: &[ObjectStatus], now: DateTime<Utc>) -> Option<i64> {
    statuses.iter().filter_map(|s| s.increment_until).max().map(|last| (now - last).num_days())
}

/// The warnings under the table: objects whose deletions Zuora no longer keeps, a session close to its reset.
pub fn warnings(statuses: &[ObjectStatus], now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    for status in statuses.iter().filter(|s| s.deletions_at_risk) {
        let until = status.increment_until.unwrap_or(now);
        out.push(format!(
            "{}: its last increment ended {} days ago, and Zuora keeps deleted rows {DELETED_ROWS_KEPT_DAYS} days: \
             deletions before {} cannot be exported (docs/operations.md, DeletionsAtRiskAlarm)",
            status.object,
            (now - until).num_days(),
            (now - chrono::Duration::days(DELETED_ROWS_KEPT_DAYS)).format("%Y-%m-%d")
        ));
    }
    if let Some(days) = session_idle_days(statuses, now).filter(|days| *days >= SESSION_IDLE_WARNING_DAYS) {
        out.push(format!(
            "the session has had no increment for {days} days; Zuora starts it again after {SESSION_RESET_IDLE_DAYS}, \
             and every object then comes back in full (docs/operations.md, SessionIdleAlarm)"
        ));
    }
    out
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
    for warning in warnings(statuses, now) {
        let _ = writeln!(out, "WARNING: {warning}");
    }
    out
}

/// The same report for automation: one JSON document (docs/operations.md, "Automation").
pub fn json(statuses: &[ObjectStatus], now: DateTime<Utc>, stale_after_hours: u64) -> serde_json::Value {
    let objects: Vec<serde_json::Value> = statuses
        .iter()
        .map(|status| {
            let mut object = serde_json::json!({
                "object": status.object, "stale": status.stale, "deletionsAtRisk": status.deletions_at_risk,
            });
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
        "sessionIdleDays": session_idle_days(statuses, now),
        "warnings": warnings(statuses, now),
        "objects": objects,
    })
}

/// The embedded-metric line of a check (no dimension): how many objects are stale, of how many, how many have
/// deletions Zuora no longer keeps, and the session's idle days. The stack's alarms read them
/// (`StaleObjectsAlarm`, `DeletionsAtRiskAlarm`, `SessionIdleAlarm`); a check that did not run leaves no value,
/// which the staleness alarm treats as stale.
pub fn emf_line(statuses: &[ObjectStatus], now: DateTime<Utc>) -> String {
    let count = |f: fn(&ObjectStatus) -> bool| statuses.iter().filter(|s| f(s)).count() as f64;
    common::metrics::emf_line(
        now,
        &[],
        &[
            ("StaleObjects", "Count", count(|s| s.stale)),
            ("Objects", "Count", statuses.len() as f64),
            ("ObjectsPastDeletedRetention", "Count", count(|s| s.deletions_at_risk)),
            ("SessionIdleDays", "Count", session_idle_days(statuses, now).unwrap_or(0) as f64),
        ],
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

    #[tokio::test]
    async fn a_last_increment_past_zuoras_retention_of_deleted_rows_and_an_idle_session_are_warned_of() {
        let to: DateTime<Utc> = "2026-06-01T06:00:00Z".parse().unwrap();
        let (_root, ledger) = ledger_with_account(to, to).await;
        let catalogue = Catalogue { objects: Catalogue::builtin().objects[..1].to_vec() };
        let day = chrono::Duration::hours(36);
        let check = async |days: i64| {
            let now = to + chrono::Duration::days(days);
            let statuses = object_statuses(&ledger, &catalogue, now, day).await.unwrap();
            (statuses.clone(), json(&statuses, now, 36), emf_line(&statuses, now))
        };
        let (statuses, report, _) = check(29).await;
        assert!(!statuses[0].deletions_at_risk && report["warnings"].as_array().unwrap().is_empty(), "{report}");
        let (statuses, report, line) = check(31).await;
        assert!(statuses[0].deletions_at_risk);
        assert_eq!(
            (report["objects"][0]["deletionsAtRisk"].as_bool(), report["sessionIdleDays"].as_i64()),
            (Some(true), Some(31))
        );
        assert!(
            report["warnings"][0].as_str().unwrap().contains("Account: its last increment ended 31 days ago"),
            "{report}"
        );
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line["ObjectsPastDeletedRetention"], 1.0);
        let (_, report, line) = check(151).await;
        let warnings = report["warnings"].to_string();
        assert!(warnings.contains("no increment for 151 days") && warnings.contains("after 180"), "{warnings}");
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line["SessionIdleDays"], 151.0);
    }
}
