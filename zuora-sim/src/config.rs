//! The simulator's configuration: fixed at start (`SimConfig`) and tunable at run time (`Settings`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the simulated tenant lives; decides how `incrementalTime` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataCenter {
    /// US data centres read `incrementalTime` as America/Los_Angeles (DST-aware).
    #[default]
    Us,
    /// The EU data centre reads it as UTC.
    Eu,
}

/// Everything fixed when the simulator starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free one.
    pub listen: String,
    /// Seed of every generated value: one seed, one data set.
    pub seed: u64,
    /// The only client id `/oauth/token` accepts.
    pub client_id: String,
    /// The only client secret `/oauth/token` accepts.
    pub client_secret: String,
    /// Lifetime of issued tokens, in (simulated) seconds; Zuora's is 3599.
    pub token_lifetime_secs: u64,
    /// How `incrementalTime` is read.
    pub data_center: DataCenter,
    /// The simulated clock's start; the real time at start when absent.
    pub clock_start: Option<DateTime<Utc>>,
    /// Generated rows are created from this instant on.
    pub genesis: DateTime<Utc>,
    /// ... over this many days.
    pub history_days: u32,
    /// Rows per object, overriding each object's default (see `schema::objects`). The TOML key is `rows`;
    /// `objects` is accepted too (the name the design notes use).
    #[serde(alias = "objects")]
    pub rows: BTreeMap<String, u64>,
    /// The tenant's custom fields (`Name__c`, text), per object; by default the ones the old export's queries
    /// read, so that `builtin:old-export` runs here.
    pub custom_fields: BTreeMap<String, Vec<String>>,
    /// Render result files on the serving task instead of on blocking threads: for the chaos harness's
    /// single-threaded runtime on Tokio's paused clock, where downloads stalled while blocking threads rendered.
    pub render_inline: bool,
    /// The tenant's entities (Zuora Multi-entity): when any, every API call must name one of them in the
    /// `Zuora-Entity-Ids` header. Empty: a single-entity tenant, where the header is not needed.
    pub entity_ids: Vec<String>,
    /// The run-time tunable part.
    pub settings: Settings,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".to_owned(),
            seed: 42,
            client_id: "0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b".to_owned(),
            client_secret: "sim-client-secret".to_owned(),
            token_lifetime_secs: 3599,
            data_center: DataCenter::Us,
            clock_start: None,
            genesis: DateTime::from_timestamp(1_577_836_800, 0).unwrap_or_default(), // 2020-01-01T00:00:00Z
            history_days: 1461,
            rows: BTreeMap::new(),
            custom_fields: crate::schema::default_custom_fields(),
            render_inline: false,
            entity_ids: Vec::new(),
            settings: Settings::default(),
        }
    }
}

impl SimConfig {
    /// Refuses what cannot be simulated, naming the key: rows or custom fields of an unknown object, a custom
    /// field whose name does not end in `__c` or is taken.
    pub fn check(&self) -> Result<(), String> {
        let objects = crate::schema::objects();
        let find = |name: &str| objects.iter().find(|o| o.name.eq_ignore_ascii_case(name));
        if let Some(unknown) = self.rows.keys().find(|name| find(name).is_none()) {
            return Err(format!("rows.{unknown}: no such simulated object"));
        }
        for (object, names) in &self.custom_fields {
            let schema = find(object).ok_or_else(|| format!("custom_fields.{object}: no such simulated object"))?;
            let mut seen = std::collections::BTreeSet::new();
            for name in names {
                let well_formed = name.len() > 3
                    && name.ends_with("__c")
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && name.starts_with(|c: char| c.is_ascii_alphabetic());
                if !well_formed {
                    return Err(format!("custom_fields.{object}: {name:?} is not a custom field name (Name__c)"));
                }
                if schema.field(name).is_some() || !seen.insert(name.to_ascii_lowercase()) {
                    return Err(format!("custom_fields.{object}: {name} is there twice"));
                }
            }
        }
        Ok(())
    }
}

/// Behaviour that tests change while the simulator runs (`PATCH /sim/settings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Seconds a job stays `submitted` before it may start.
    pub job_queue_secs: f64,
    /// Seconds a job stays `executing`.
    pub job_execution_secs: f64,
    /// Result files are purged this many hours after the job completed (Zuora: 72).
    pub file_lifetime_hours: f64,
    /// Files larger than this are refused with 403 `max-object-size` (Zuora: 2,047 MB); `null` for no limit.
    pub max_file_bytes: Option<u64>,
    /// Send `Content-Length` (true) or stream chunked (false).
    pub content_length: bool,
    /// File Segmentation: stateful full loads split into files of at most this many records.
    pub segment_rows: Option<u64>,
    /// Concurrent (submitted + executing) jobs per mode, stateful and stateless (Zuora: 50).
    pub max_concurrent_jobs: usize,
    /// Line ending of result files.
    pub line_ending: String,
    /// Older JSON shapes: `version` and `recordCount` as other types, `startTime` and `incrementalTime` as
    /// wall-clock text.
    pub legacy_json: bool,
    /// Deleted rows are purged this many days after their deletion (Zuora: 30): an increment whose window starts
    /// earlier cannot report the deletions older than that.
    pub deleted_retention_days: f64,
    /// A stateful session no job used for this many days starts again (Zuora: 180): its next job is a full load of
    /// every query, `full: true`, whatever the queries.
    pub session_reset_idle_days: f64,
    /// Simulated processing time of a query per record it returns, seconds; 0 for none. With `query_time_limit_secs`
    /// it decides which queries Zuora kills: a large first load, not its windows.
    pub query_secs_per_record: f64,
    /// A query that would run longer is killed and its job aborted (Zuora: 3 hours, errors 90027 and 90029).
    pub query_time_limit_secs: f64,
    /// Seconds a job executes per record its queries return, on top of `job_execution_secs` (which is then the
    /// job's overhead at Zuora, however small the job): a tenant's real pace, for benchmarks of many jobs. 0: every
    /// job takes `job_execution_secs`.
    pub execution_secs_per_record: f64,
    /// The share (0 to 1) of completion notifications (`notifyUrl`) never sent, drawn from the seed: a callout
    /// Zuora drops, or an endpoint down.
    pub notify_lost: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            job_queue_secs: 0.0,
            job_execution_secs: 1.0,
            file_lifetime_hours: 72.0,
            max_file_bytes: Some(2047 * 1024 * 1024),
            content_length: false,
            segment_rows: None,
            max_concurrent_jobs: 50,
            line_ending: "\n".to_owned(),
            legacy_json: false,
            deleted_retention_days: 30.0,
            session_reset_idle_days: 180.0,
            query_secs_per_record: 0.0,
            query_time_limit_secs: 3.0 * 3600.0,
            execution_secs_per_record: 0.0,
            notify_lost: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_is_valid_and_shows_the_defaults() {
        let example: SimConfig = toml::from_str(include_str!("../sim.example.toml")).unwrap();
        let defaults = SimConfig::default();
        assert_eq!(example.client_id, defaults.client_id);
        assert_eq!(example.settings.max_file_bytes, defaults.settings.max_file_bytes);
        assert_eq!(example.settings.job_execution_secs, defaults.settings.job_execution_secs);
        assert_eq!(example.genesis, defaults.genesis);
        assert_eq!(example.rows.get("Account"), Some(&200));
        assert_eq!(example.custom_fields, defaults.custom_fields);
        assert_eq!(example.check(), Ok(()));
    }

    #[test]
    fn a_configuration_the_simulator_cannot_honour_is_refused_naming_the_key() {
        let with = |toml_text: &str| toml::from_str::<SimConfig>(toml_text).unwrap().check().unwrap_err();
        assert!(with("[rows]\nWidget = 3").starts_with("rows.Widget"));
        assert!(with("[custom_fields]\nWidget = [\"A__c\"]").starts_with("custom_fields.Widget"));
        assert!(with("[custom_fields]\nAccount = [\"Region\"]").contains("\"Region\" is not a custom field"));
        assert!(with("[custom_fields]\nAccount = [\"A__c\", \"a__c\"]").contains("twice"));
        let none: SimConfig = toml::from_str("[custom_fields]").unwrap();
        assert_eq!((none.check(), none.custom_fields.len()), (Ok(()), 0));
    }
}
