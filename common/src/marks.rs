//! Published marks: every increment of each object that reached the lake, and which of them is the latest.
//!
//! The consumer writes one mark per published file, once, under `published/<object>/` in the ledger's prefix,
//! named so that names sort as the data's age: `<window end>_<executed at>_<job id>_<segment>.json` (UTC, fixed
//! width), where the window end is never later than the time the mark was written (a window claiming to end in
//! the future would otherwise stay the latest for ever). No mark is ever rewritten: consumers publishing at once (the windows of a full export, a late
//! redelivery) cannot lose each other's marks or move the latest back to older data, and the latest is the last
//! name listed. A deployment that ran an earlier build has one mutable `published/<object>.json` instead; it is
//! read while no mark of the new kind exists.

use crate::messages::{JobKind, Window};
use crate::records::{LedgerError, Records};
use crate::store::ObjectStore;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One published increment of one object (one file of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedMark {
    /// The object.
    pub object: String,
    /// The job.
    pub job_id: String,
    /// The window.
    pub window: Window,
    /// When Zuora produced the data.
    pub executed_at: DateTime<Utc>,
    /// When the consumer published it.
    pub published_at: DateTime<Utc>,
    /// Where the data file is.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// The file's place among its batch's files (0-based).
    #[serde(default)]
    pub segment: u32,
    /// How many files its batch has.
    #[serde(default = "one")]
    pub segments: u32,
    /// What kind of export the file came from (absent in marks of earlier builds, which are read as increments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
}

fn one() -> u32 {
    1
}

impl PublishedMark {
    /// How recent the file's data is: its window's end, but never later than when it was published.
    pub fn data_until(&self) -> DateTime<Utc> {
        self.window.to.min(self.published_at)
    }

    /// True for a file of the session's increments (marks of earlier builds, which have no kind, count as such).
    pub fn is_increment(&self) -> bool {
        self.kind.is_none_or(|kind| kind == JobKind::Increment)
    }

    /// The mark's name: names sort as (window end, executed at, job, segment), the order of the data's age; the
    /// window end no later than when the mark was written.
    fn name(&self) -> String {
        const AT: &str = "%Y%m%dT%H%M%S%.9fZ";
        let (to, executed) = (self.data_until().format(AT), self.executed_at.format(AT));
        format!("published/{}/{to}_{executed}_{}_{:05}.json", self.object, self.job_id, self.segment)
    }
}

/// A job whose every file is published.
#[derive(Debug, Serialize, Deserialize)]
struct JobPublished {
    files: usize,
}

/// The published marks, in the ledger's bucket and prefix.
#[derive(Clone)]
pub struct Marks {
    records: Records,
}

impl Marks {
    /// The marks kept among `records` (the ledger's).
    pub(crate) fn new(records: Records) -> Self {
        Self { records }
    }

    /// The marks under the ledger's `prefix` (ending in `/`) of `bucket` (`ledger.bucket`, `ledger.prefix`).
    pub fn at(store: Arc<dyn ObjectStore>, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self::new(Records::new(store, bucket, prefix))
    }

    /// Records a published file; recording the same file again writes the same name.
    pub async fn record(&self, mark: &PublishedMark) -> Result<(), LedgerError> {
        self.records.write_once(&mark.name(), mark).await
    }

    /// Records that every file of job `job_id` (a Zuora id) is published and announced, `files` of them: a later
    /// message of the job (the slow poll after a notification published it, a redelivery) is settled without
    /// asking Zuora again. Written once, after the last announcement.
    pub async fn record_job_published(&self, job_id: &str, files: usize) -> Result<(), LedgerError> {
        self.records.write_once(&format!("published-jobs/{job_id}.json"), &JobPublished { files }).await
    }

    /// Whether [`Marks::record_job_published`] was recorded for `job_id`.
    pub async fn job_published(&self, job_id: &str) -> Result<bool, LedgerError> {
        let record: Option<JobPublished> = self.records.read(&format!("published-jobs/{job_id}.json")).await?;
        Ok(record.is_some())
    }

    /// The object's latest published file: the newest data (the latest window end, then the latest run of it),
    /// whatever order the files were published in, and whatever kind of export it came from.
    pub async fn latest(&self, object: &str) -> Result<Option<PublishedMark>, LedgerError> {
        let names = self.names(object).await?;
        match names.last() {
            Some(name) => self.records.read(name).await,
            None => self.records.read(&format!("published/{object}.json")).await,
        }
    }

    /// The object's latest published increment of the session (what the old export's fixed key held): backfills
    /// and full-export windows ending later are passed over. Reads marks from the newest back to the first
    /// increment.
    pub async fn latest_increment(&self, object: &str) -> Result<Option<PublishedMark>, LedgerError> {
        let names = self.names(object).await?;
        if names.is_empty() {
            return self.records.read(&format!("published/{object}.json")).await;
        }
        self.last_increment_of(&names).await
    }

    /// [`Marks::latest`] and [`Marks::latest_increment`] of the object from one listing (`producer status` asks
    /// for both): the same mark when the newest file is an increment.
    pub async fn latest_and_increment(
        &self,
        object: &str,
    ) -> Result<(Option<PublishedMark>, Option<PublishedMark>), LedgerError> {
        let names = self.names(object).await?;
        let Some((newest, older)) = names.split_last() else {
            let legacy: Option<PublishedMark> = self.records.read(&format!("published/{object}.json")).await?;
            return Ok((legacy.clone(), legacy));
        };
        let latest: Option<PublishedMark> = self.records.read(newest).await?;
        if latest.as_ref().is_some_and(PublishedMark::is_increment) {
            return Ok((latest.clone(), latest));
        }
        Ok((latest, self.last_increment_of(older).await?))
    }

    /// The newest increment among the marks `names` (in name order).
    async fn last_increment_of(&self, names: &[String]) -> Result<Option<PublishedMark>, LedgerError> {
        for name in names.iter().rev() {
            if let Some(mark) = self.records.read::<PublishedMark>(name).await?
                && mark.is_increment()
            {
                return Ok(Some(mark));
            }
        }
        Ok(None)
    }

    /// Every segment's mark of the file `mark` is a segment of (its job's batch), in segment order.
    pub async fn segments_of(&self, mark: &PublishedMark) -> Result<Vec<PublishedMark>, LedgerError> {
        let name = mark.name();
        let prefix = name.trim_end_matches(".json").trim_end_matches(|c: char| c.is_ascii_digit());
        let mut segments = Vec::new();
        for name in self.names(&mark.object).await?.iter().filter(|n| n.starts_with(prefix)) {
            if let Some(segment) = self.records.read::<PublishedMark>(name).await? {
                segments.push(segment);
            }
        }
        segments.sort_by_key(|s| s.segment);
        Ok(segments)
    }

    /// The names of the object's marks, oldest data first.
    async fn names(&self, object: &str) -> Result<Vec<String>, LedgerError> {
        let mut names = self.records.list(&format!("published/{object}/")).await?;
        names.retain(|name| name.ends_with(".json"));
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use chrono::TimeZone;
    use std::sync::Arc;

    fn at(year: i32, month: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single().unwrap_or_default()
    }

    fn mark(from: DateTime<Utc>, to: DateTime<Utc>, executed_at: DateTime<Utc>) -> PublishedMark {
        PublishedMark {
            object: "Invoice".into(),
            job_id: format!("job-{}-{}", to.timestamp(), executed_at.timestamp()),
            window: Window { from: Some(from), to },
            executed_at,
            published_at: executed_at,
            bucket: "lake".into(),
            key: format!("Invoice/{}.csv", to.timestamp()),
            segment: 0,
            segments: 1,
            kind: Some(JobKind::Increment),
        }
    }

    /// Marks in a new directory (removed when the second value is dropped).
    fn marks() -> (Marks, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        (Marks::at(Arc::new(LocalStore::new(root.path())), "lake", "ledger/"), root)
    }

    #[tokio::test]
    async fn the_latest_mark_is_the_newest_data_whatever_the_order_of_publication() {
        let (marks, _root) = marks();
        let executed = at(2026, 11);
        // The windows of one full export run at the same time; their files are published in any order.
        let newest = mark(at(2026, 1), at(2026, 11), executed);
        marks.record(&newest).await.unwrap();
        marks.record(&mark(at(2025, 1), at(2026, 1), executed)).await.unwrap();
        assert_eq!(marks.latest("Invoice").await.unwrap(), Some(newest.clone()));
        // A past window exported again later does not make the object look older than it is.
        marks.record(&mark(at(2025, 1), at(2026, 1), at(2026, 12))).await.unwrap();
        assert_eq!(marks.latest("Invoice").await.unwrap(), Some(newest.clone()));
        // The same window exported again later is the latest (the same data, newer), and stays so when recorded
        // again.
        let again = mark(at(2026, 1), at(2026, 11), at(2026, 12));
        marks.record(&again).await.unwrap();
        marks.record(&newest).await.unwrap();
        assert_eq!(marks.latest("Invoice").await.unwrap(), Some(again));
        // The next increment moves it on; another object's marks are apart.
        let next = mark(at(2026, 11), at(2026, 12), at(2026, 12));
        marks.record(&next).await.unwrap();
        assert_eq!(marks.latest("Invoice").await.unwrap(), Some(next));
        assert_eq!(marks.latest("InvoiceItem").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_latest_increment_passes_over_later_backfills_and_full_export_windows() {
        let (marks, _root) = marks();
        let increment = mark(at(2026, 10), at(2026, 11), at(2026, 11));
        marks.record(&increment).await.unwrap();
        for kind in [JobKind::Backfill, JobKind::FullWindow] {
            let job_id = format!("{kind:?}");
            let later = PublishedMark { kind: Some(kind), job_id, ..mark(at(2026, 1), at(2026, 12), at(2026, 12)) };
            marks.record(&later).await.unwrap();
            assert_eq!(marks.latest("Invoice").await.unwrap(), Some(later.clone()));
            assert_eq!(marks.latest_increment("Invoice").await.unwrap(), Some(increment.clone()));
            let both = marks.latest_and_increment("Invoice").await.unwrap();
            assert_eq!(both, (Some(later), Some(increment.clone())), "both from one listing");
        }
        // A mark of an earlier build (no kind) counts as an increment.
        let earlier_build = PublishedMark { kind: None, ..mark(at(2026, 11), at(2027, 1), at(2027, 1)) };
        marks.record(&earlier_build).await.unwrap();
        assert_eq!(marks.latest_increment("Invoice").await.unwrap(), Some(earlier_build.clone()));
        let both = marks.latest_and_increment("Invoice").await.unwrap();
        assert_eq!(both, (Some(earlier_build.clone()), Some(earlier_build)), "the newest is the increment");
    }

    #[tokio::test]
    async fn a_mark_never_sorts_after_the_time_it_was_written() {
        let (marks, _root) = marks();
        // A window that claims to end in 2099 (a bad request, a clock far off) is latest only until the next one.
        marks.record(&mark(at(2026, 10), at(2099, 1), at(2026, 11))).await.unwrap();
        let next = mark(at(2026, 11), at(2026, 12), at(2026, 12));
        marks.record(&next).await.unwrap();
        assert_eq!(marks.latest("Invoice").await.unwrap(), Some(next));
    }

    #[tokio::test]
    async fn marks_recorded_at_once_by_many_publishers_are_all_kept() {
        let (marks, _root) = marks();
        let months: Vec<PublishedMark> =
            (1..=12).map(|m| mark(at(2025, m), at(2025, m) + chrono::Days::new(27), at(2026, 1))).collect();
        let writes = months.iter().map(|m| marks.record(m));
        for written in futures::future::join_all(writes).await {
            written.unwrap();
        }
        assert_eq!(marks.latest("Invoice").await.unwrap(), months.last().cloned());
        assert_eq!(marks.records.list("published/Invoice/").await.unwrap().len(), 12);
    }

    #[tokio::test]
    async fn a_mark_of_an_earlier_build_is_read_until_the_first_new_one() {
        let (marks, _root) = marks();
        let old = mark(at(2026, 1), at(2026, 2), at(2026, 2));
        marks.records.write("published/Invoice.json", &old).await.unwrap();
        assert_eq!(marks.latest("Invoice").await.unwrap(), Some(old));
        let new = mark(at(2026, 2), at(2026, 3), at(2026, 3));
        marks.record(&new).await.unwrap();
        assert_eq!(marks.latest("Invoice").await.unwrap(), Some(new));
    }
}
