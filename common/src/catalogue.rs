//! The object catalogue: which Zuora objects are exported, with which query, and where their files go.
//!
//! It is configuration, not code: adding an object or a field is an edit to a TOML file. The built-in default
//! ([`Catalogue::builtin`]) is the thirteen objects the old Lambda exported.

use crate::messages::metadata_key;
use crate::zuora::{DeletedFormat, DeletedSpec, Query};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// The catalogue that ships with the project.
const BUILTIN: &str = include_str!("../catalogue.toml");
/// The old export's thirteen queries, verbatim (docs/old-export.md).
const OLD_EXPORT: &str = include_str!("../catalogue-old-export.toml");

/// The catalogues that ship in the binaries, by the name a configuration gives them (`builtin:<name>`).
pub const NAMED: [&str; 2] = ["default", "old-export"];

/// Zuora refuses jobs with more queries than this (error 90004).
pub const MAX_QUERIES_PER_JOB: usize = 50;

/// The longest lookback: a year of rows created again every time is a full export by another name.
pub const MAX_LOOKBACK_DAYS: u32 = 366;

/// Placeholders a key template may use.
pub const KEY_PLACEHOLDERS: &[&str] = &["object", "date", "job_id", "batch_id", "segment"];

/// The exported objects.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// In export order.
    pub objects: Vec<ObjectSpec>,
}

/// One exported object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpec {
    /// The object's name; also the query's name, so batches come back labelled with it.
    pub name: String,
    /// The Export ZOQL text.
    pub query: String,
    /// The deleted-flag column, or `None` for objects that cannot export deleted rows.
    pub deleted_column: Option<String>,
    /// Where the object's files go.
    pub target: Target,
    /// Days of rows a lookback request (`"exportFromDate": "lookback"`) exports again, by `CreatedDate`: for
    /// objects whose fields change without moving `UpdatedDate` (docs/zuora-aqua.md); `None` for no lookback.
    pub lookback_days: Option<u32>,
}

/// An object's place in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The bucket.
    pub bucket: String,
    /// The key template, see [`KEY_PLACEHOLDERS`].
    pub key: String,
    /// A fixed key (same bucket) kept a copy of the latest increment, for readers of the old layout.
    pub legacy_key: Option<String>,
    /// Where metadata JSON goes: under this prefix (`_metadata/`), so the data prefixes hold only data; `None`
    /// beside each file (the old layout).
    pub metadata_prefix: Option<String>,
}

impl Target {
    /// Where the old layout keeps the metadata of the file at the legacy key: `metadata/<name>.json` beside it
    /// (`Account.csv` -> `metadata/Account.json`).
    pub fn legacy_metadata_key(&self) -> Option<String> {
        let legacy = self.legacy_key.as_deref()?;
        let (dir, file) = legacy.rsplit_once('/').map_or(("", legacy), |(dir, file)| (dir, file));
        let stem = file.strip_suffix(".csv").unwrap_or(file);
        Some(if dir.is_empty() { format!("metadata/{stem}.json") } else { format!("{dir}/metadata/{stem}.json") })
    }

    /// Where the metadata JSON of the file at `key` goes: beside it ([`metadata_key`]), or the same under
    /// `metadata_prefix` (`_metadata/Account/2026-11-24/job/batch-0.metadata.json`).
    pub fn metadata_key(&self, key: &str) -> String {
        format!("{}{}", self.metadata_prefix.as_deref().unwrap_or_default(), metadata_key(key))
    }

    /// The key of one file: the template with `{object}`, `{date}` (yyyy-mm-dd), `{job_id}`, `{batch_id}` and
    /// `{segment}` filled in.
    pub fn key_for(&self, object: &str, date: chrono::NaiveDate, job_id: &str, batch_id: &str, segment: u32) -> String {
        self.key
            .replace("{object}", object)
            .replace("{date}", &date.format("%Y-%m-%d").to_string())
            .replace("{job_id}", job_id)
            .replace("{batch_id}", batch_id)
            .replace("{segment}", &segment.to_string())
    }
}

impl ObjectSpec {
    /// The AQuA query for this object.
    pub fn to_query(&self) -> Query {
        let deleted = self.deleted_column.as_ref().map(|column| DeletedSpec {
            column: column.clone(),
            format: DeletedFormat::Boolean,
            force_export: None,
        });
        Query::export(&self.name, &self.query, deleted)
    }
}

/// The file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    object: Vec<ObjectEntry>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    bucket: Option<String>,
    key: Option<String>,
    deleted_column: Option<String>,
    metadata_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectEntry {
    name: String,
    query: String,
    deleted_column: Option<String>,
    /// `false` for objects that cannot export deleted rows (Zuora error 90017 / `deleted_notallowed`).
    #[serde(default = "yes")]
    export_deleted: bool,
    bucket: Option<String>,
    key: Option<String>,
    /// A fixed key kept current with a server-side copy of the latest increment (e.g. `Account.csv`).
    legacy_key: Option<String>,
    metadata_prefix: Option<String>,
    lookback_days: Option<u32>,
}

fn yes() -> bool {
    true
}

/// A catalogue that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("catalogue {origin}: {detail}")]
pub struct CatalogueError {
    origin: String,
    detail: String,
}

impl CatalogueError {
    /// A catalogue that cannot be used with the rest of the configuration.
    pub(crate) fn new(origin: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { origin: origin.into(), detail: detail.into() }
    }
}

impl Catalogue {
    /// The catalogue that ships with the project: the thirteen objects of the old export.
    pub fn builtin() -> Self {
        #[allow(clippy::expect_used)]
        Self::parse(BUILTIN, "built-in").expect("the built-in catalogue is checked by a unit test")
    }

    /// A catalogue that ships in the binaries, by name (see [`NAMED`]).
    pub fn named(name: &str) -> Result<Self, CatalogueError> {
        match name {
            "default" => Ok(Self::builtin()),
            "old-export" => Self::parse(OLD_EXPORT, "builtin:old-export"),
            other => Err(CatalogueError {
                origin: format!("builtin:{other}"),
                detail: format!("no such built-in catalogue; there are {}", NAMED.join(", ")),
            }),
        }
    }

    /// Reads a catalogue file.
    pub fn load(path: &Path) -> Result<Self, CatalogueError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CatalogueError { origin: origin.clone(), detail: format!("cannot read: {e}") })?;
        Self::parse(&text, &origin)
    }

    /// Parses and validates catalogue TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CatalogueError> {
        let fail = |detail: String| CatalogueError { origin: origin.to_owned(), detail };
        let file: File = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        if file.object.is_empty() {
            return Err(fail("object: at least one [[object]] is needed".to_owned()));
        }
        if file.object.len() > MAX_QUERIES_PER_JOB {
            return Err(fail(format!(
                "object: {} objects, Zuora allows {MAX_QUERIES_PER_JOB} per job",
                file.object.len()
            )));
        }
        let mut seen = HashSet::new();
        let mut objects = Vec::with_capacity(file.object.len());
        for (i, entry) in file.object.into_iter().enumerate() {
            let at = |field: &str| format!("object[{i}] ({}).{field}", entry.name);
            if entry.name.trim().is_empty() || !entry.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(fail(format!("{}: must be a non-empty name of letters, digits or _", at("name"))));
            }
            if !seen.insert(entry.name.to_ascii_lowercase()) {
                return Err(fail(format!("{}: listed twice", at("name"))));
            }
            if crate::zoql::Select::parse(&entry.query).is_none() {
                return Err(fail(format!("{}: must be a SELECT of columns FROM one object", at("query"))));
            }
            let deleted_column = if entry.export_deleted {
                let column = entry.deleted_column.or_else(|| file.defaults.deleted_column.clone());
                match column {
                    Some(c) if c.trim().is_empty() => {
                        return Err(fail(format!("{}: must not be empty", at("deleted_column"))));
                    }
                    Some(c) => Some(c),
                    None => return Err(fail(format!("{}: needed (or export_deleted = false)", at("deleted_column")))),
                }
            } else {
                None
            };
            let bucket = entry.bucket.or_else(|| file.defaults.bucket.clone());
            let key = entry.key.or_else(|| file.defaults.key.clone());
            let (Some(bucket), Some(key)) = (bucket, key) else {
                return Err(fail(format!("{}: bucket and key are needed (here or in [defaults])", at("bucket"))));
            };
            check_key_template(&key).map_err(|detail| fail(format!("{}: {detail}", at("key"))))?;
            if let Some(legacy) = &entry.legacy_key
                && (legacy.contains('{') || legacy.is_empty() || legacy.starts_with('/'))
            {
                return Err(fail(format!("{}: a fixed key, without placeholders", at("legacy_key"))));
            }
            if let Some(days) = entry.lookback_days
                && !(1..=MAX_LOOKBACK_DAYS).contains(&days)
            {
                return Err(fail(format!("{}: 1 to {MAX_LOOKBACK_DAYS} days, got {days}", at("lookback_days"))));
            }
            let metadata_prefix = entry.metadata_prefix.or_else(|| file.defaults.metadata_prefix.clone());
            if let Some(prefix) = &metadata_prefix
                && (prefix.contains('{') || prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() < 2)
            {
                return Err(fail(format!(
                    "{}: a fixed prefix ending in /, e.g. \"_metadata/\"",
                    at("metadata_prefix")
                )));
            }
            let target = Target { bucket, key, legacy_key: entry.legacy_key, metadata_prefix };
            let lookback_days = entry.lookback_days;
            objects.push(ObjectSpec { name: entry.name, query: entry.query, deleted_column, target, lookback_days });
        }
        Ok(Self { objects })
    }

    /// The objects whose names are in `names` (case-insensitive), in catalogue order; unknown names are returned
    /// as the error.
    pub fn select(&self, names: &[String]) -> Result<Vec<&ObjectSpec>, Vec<String>> {
        let unknown: Vec<String> =
            names.iter().filter(|n| !self.objects.iter().any(|o| o.name.eq_ignore_ascii_case(n))).cloned().collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        Ok(self.objects.iter().filter(|o| names.iter().any(|n| o.name.eq_ignore_ascii_case(n))).collect())
    }
}

/// A key template's placeholders must all be known, braces balanced, and every file must get a key of its own:
/// `{segment}` (a segmented full load has several files per batch) and `{batch_id}` or `{job_id}` with `{object}`.
/// A key reused by a later file would make the worker take that file for one already published and drop it.
fn check_key_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("unclosed {{ in {template:?}"))?;
        let name = &after[..close];
        if !KEY_PLACEHOLDERS.contains(&name) {
            return Err(format!("unknown placeholder {{{name}}}; known: {}", KEY_PLACEHOLDERS.join(", ")));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("stray }} in {template:?}"));
    }
    if template.starts_with('/') || template.is_empty() {
        return Err("must be a non-empty key that does not start with /".to_owned());
    }
    let has = |placeholder: &str| template.contains(placeholder);
    if !has("{segment}") || !(has("{batch_id}") || has("{job_id}") && has("{object}")) {
        return Err(format!(
            "{template:?} would give two files the same key: it needs {{segment}} and {{batch_id}} (or {{job_id}} and {{object}}), e.g. \"{{object}}/{{date}}/{{job_id}}/{{batch_id}}-{{segment}}.csv\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_thirteen_objects_of_the_old_export() {
        let catalogue = Catalogue::builtin();
        let names: Vec<&str> = catalogue.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Account",
                "RatePlanCharge",
                "RatePlanChargeTier",
                "RatePlan",
                "Subscription",
                "Contact",
                "PaymentMethod",
                "Amendment",
                "Invoice",
                "Payment",
                "InvoicePayment",
                "Refund",
                "InvoiceItem"
            ]
        );
        for object in &catalogue.objects {
            assert_eq!((object.deleted_column.as_deref(), object.lookback_days), (Some("IsDeleted"), None));
            assert!(object.query.ends_with(&format!("FROM {}", object.name)) || object.name == "InvoiceItem");
        }
        let query = catalogue.objects[0].to_query();
        assert_eq!(query.name, "Account");
        assert_eq!(query.deleted.unwrap().format, DeletedFormat::Boolean);
    }

    #[test]
    fn errors_name_the_field() {
        let base =
            "[defaults]\nbucket = \"b\"\nkey = \"{object}/{job_id}-{segment}.csv\"\ndeleted_column = \"IsDeleted\"\n";
        let cases = [
            ("[[object]]\nname = \"A\"\nquery = \"SELECT Id FROM A\"\ncolour = 1\n", "unknown field"),
            ("[[object]]\nname = \"A\"\nquery = \"DROP A\"\n", "object[0] (A).query"),
            ("[[object]]\nname = \"A\"\nquery = \"SELECT Id FROM A\"\nkey = \"{obj}.csv\"\n", "object[0] (A).key"),
            (
                "[[object]]\nname = \"A\"\nquery = \"SELECT Id FROM A\"\nkey = \"{object}/{date}.csv\"\n",
                "object[0] (A).key: \"{object}/{date}.csv\" would give two files the same key",
            ),
            (
                "[[object]]\nname = \"A\"\nquery = \"SELECT Id FROM A\"\nkey = \"{object}/{job_id}.csv\"\n",
                "needs {segment}",
            ),
            ("[[object]]\nname = \"A\"\nquery = \"SELECT Id FROM A\"\nkey = \"{job_id}/{segment}.csv\"\n", "same key"),
            (
                "[[object]]\nname = \"A\"\nquery = \"SELECT Id FROM A\"\n[[object]]\nname = \"a\"\nquery = \"SELECT Id FROM A\"\n",
                "object[1] (a).name: listed twice",
            ),
            (
                "[[object]]\nname = \"A\"\nquery = \"SELECT Id FROM A\"\nlookback_days = 0\n",
                "object[0] (A).lookback_days: 1 to 366 days, got 0",
            ),
        ];
        for (objects, expected) in cases {
            let err = Catalogue::parse(&format!("{base}{objects}"), "test.toml").unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        }
    }

    #[test]
    fn objects_may_opt_out_of_deleted_rows_and_override_targets() {
        let text = "[[object]]\nname = \"AccountingPeriod\"\nquery = \"SELECT Id FROM AccountingPeriod\"\n\
                    export_deleted = false\nbucket = \"periods\"\nkey = \"{date}/{batch_id}-{segment}.csv\"\n";
        let catalogue = Catalogue::parse(&format!("{text}lookback_days = 35\n"), "t").unwrap();
        let object = &catalogue.objects[0];
        assert_eq!((object.deleted_column.as_deref(), object.lookback_days), (None, Some(35)));
        assert!(object.to_query().deleted.is_none());
        assert_eq!(
            object.target,
            Target {
                bucket: "periods".into(),
                key: "{date}/{batch_id}-{segment}.csv".into(),
                legacy_key: None,
                metadata_prefix: None,
            }
        );
    }

    #[test]
    fn keys_fill_every_placeholder_and_the_default_never_reuses_a_key() {
        let target = &Catalogue::builtin().objects[0].target;
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(target.key_for("Account", date, "j1", "b1", 0), "Account/2026-11-24/j1/b1-0.csv");
        assert_ne!(target.key_for("Account", date, "j2", "b2", 0), target.key_for("Account", date, "j1", "b1", 0));
    }

    #[test]
    fn select_finds_objects_case_insensitively_and_reports_unknown_ones() {
        let catalogue = Catalogue::builtin();
        let picked = catalogue.select(&["invoice".into(), "Account".into()]).unwrap();
        assert_eq!(picked.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["Account", "Invoice"]);
        assert_eq!(catalogue.select(&["Nope".into()]).unwrap_err(), vec!["Nope".to_owned()]);
    }

    #[test]
    fn the_old_export_profile_sends_the_old_queries_to_the_character() {
        let documented = include_str!("../../docs/old-export.md");
        let mut blocks = Vec::new();
        let mut rest = documented;
        while let Some(at) = rest.find("\n### ") {
            let section = &rest[at + 5..];
            let name = section.lines().next().unwrap_or_default().to_owned();
            let Some(start) = section.find("```sql\n") else { break };
            let query = &section[start + 7..];
            let query = &query[..query.find("\n```").unwrap_or(query.len())];
            blocks.push((name, query.to_owned()));
            rest = &section[start..];
        }
        assert_eq!(blocks.len(), 13, "docs/old-export.md documents the thirteen queries");
        let catalogue = Catalogue::named("old-export").unwrap();
        let profile: Vec<(String, String)> =
            catalogue.objects.iter().map(|o| (o.name.clone(), o.query.clone())).collect();
        assert_eq!(profile, blocks);
        for object in &catalogue.objects {
            assert_eq!(object.deleted_column.as_deref(), Some("IsDeleted"));
            assert_eq!(object.target.bucket, format!("ophan-raw-zuora-increment-{}", object.name.to_lowercase()));
            assert_eq!(object.target.legacy_key.as_deref(), Some(format!("{}.csv", object.name).as_str()));
        }
        assert!(Catalogue::named("nope").unwrap_err().to_string().contains("default, old-export"));
    }

    #[test]
    fn a_metadata_prefix_keeps_metadata_out_of_the_data_prefixes() {
        let text = "[defaults]\nbucket = \"b\"\nkey = \"{object}/{date}/{job_id}/{batch_id}-{segment}.csv\"\n\
                    deleted_column = \"IsDeleted\"\nmetadata_prefix = \"_metadata/\"\n\
                    [[object]]\nname = \"Account\"\nquery = \"SELECT Id FROM Account\"\n";
        let target = &Catalogue::parse(text, "t").unwrap().objects[0].target;
        let key = "Account/2026-11-24/j/b-0.csv.gz";
        assert_eq!(target.metadata_key(key), "_metadata/Account/2026-11-24/j/b-0.metadata.json");
        let beside = Target { metadata_prefix: None, ..target.clone() };
        assert_eq!(beside.metadata_key(key), "Account/2026-11-24/j/b-0.metadata.json");
        for bad in ["", "_metadata", "/_metadata/", "{object}/"] {
            let error = Catalogue::parse(&text.replace("\"_metadata/\"", &format!("{bad:?}")), "t").unwrap_err();
            assert!(error.to_string().contains("metadata_prefix"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_old_layouts_metadata_sits_in_metadata_beside_the_fixed_key() {
        let target = |legacy: &str| Target {
            bucket: "b".into(),
            key: "k".into(),
            legacy_key: Some(legacy.into()),
            metadata_prefix: None,
        };
        assert_eq!(target("Account.csv").legacy_metadata_key().as_deref(), Some("metadata/Account.json"));
        assert_eq!(target("old/Account.csv").legacy_metadata_key().as_deref(), Some("old/metadata/Account.json"));
        assert_eq!(Target { legacy_key: None, ..target("x") }.legacy_metadata_key(), None);
    }
}
