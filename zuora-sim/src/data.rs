//! Tables: generated rows (pure functions of seed, object, key and version) plus an overlay of changes.
//!
//! A table of N rows costs nothing until it is read: row `k < N` is computed when needed, so a 10 GiB file is
//! generated row by row while it is sent. Changes (insert, update, delete) are events in an overlay, kept with
//! their instants, so the state of any row as of any instant can be read back: a job's file is fixed by its
//! window, however the table changes afterwards. The overlay is copy-on-write behind an `Arc`: a job keeps a
//! snapshot for the price of a reference count.

use crate::schema::{FieldType, ObjectSchema};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// Keys of inserted rows start here, far above any generated row.
pub const INSERTED_KEYS: u64 = 1 << 40;

/// A change to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The row appeared.
    Insert,
    /// Its values changed.
    Update,
    /// It was deleted.
    Delete,
}

/// A change and when it happened.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub kind: EventKind,
}

/// A row as of some instant.
#[derive(Debug, Clone, Copy)]
pub struct RowState {
    /// The row's key.
    pub key: u64,
    /// Created.
    pub created: DateTime<Utc>,
    /// Last changed.
    pub updated: DateTime<Utc>,
    /// Bumped by each update; the values are a function of it.
    pub version: u32,
    /// When it was deleted, if it was by then.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The fixed inputs of value generation.
#[derive(Debug, Clone)]
pub struct Generator {
    /// The seed.
    pub seed: u64,
    /// Rows are created between `genesis` and `genesis + history`.
    pub genesis: DateTime<Utc>,
    /// See `genesis`.
    pub history: Duration,
    /// Generated rows of every object, for references between objects.
    pub base_rows: Arc<HashMap<&'static str, u64>>,
}

/// One object's rows at one moment: what a job reads.
#[derive(Clone)]
pub struct Snapshot {
    /// The object.
    pub schema: Arc<ObjectSchema>,
    /// Generated rows.
    pub base_rows: u64,
    /// Changes by key.
    pub overlay: Arc<BTreeMap<u64, Vec<Event>>>,
    /// Value generation.
    pub generator: Generator,
}

/// One object's table, mutable.
#[derive(Clone)]
pub struct Table {
    /// Generated rows.
    pub base_rows: u64,
    /// Changes by key.
    pub overlay: Arc<BTreeMap<u64, Vec<Event>>>,
    /// The next inserted row's key.
    pub next_insert: u64,
}

impl Table {
    /// A table of `rows` generated rows and no changes.
    pub fn new(rows: u64) -> Self {
        Self { base_rows: rows, overlay: Arc::default(), next_insert: INSERTED_KEYS }
    }

    /// Records an event.
    pub fn record(&mut self, key: u64, event: Event) {
        Arc::make_mut(&mut self.overlay).entry(key).or_default().push(event);
    }
}

/// splitmix64: a fast, well-mixed bijection on u64.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A stable hash of a name.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3))
}

impl Generator {
    fn salt(&self, object: &str) -> u64 {
        mix(self.seed ^ name_hash(object))
    }

    /// The 32-hex id of row `key` of `object`; distinct keys give distinct ids (`mix` is a bijection).
    pub fn id(&self, object: &str, key: u64, out: &mut Vec<u8>) {
        let salt = self.salt(object);
        let _ = write!(Bytes(out), "{:016x}{:016x}", mix(key ^ salt.rotate_left(17)), mix(key ^ salt));
    }

    /// Creation and last-change instants of generated row `key` of `rows`.
    pub fn base_times(&self, object: &str, key: u64, rows: u64) -> (DateTime<Utc>, DateTime<Utc>) {
        let span = self.history.num_seconds().max(1) as u64;
        let step = (span / rows.max(1)).max(1);
        let h = mix(self.salt(object) ^ key.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let created_offset = (key.saturating_mul(span) / rows.max(1)) + h % step;
        let created = self.genesis + Duration::seconds(created_offset.min(span - 1) as i64);
        let end = self.genesis + self.history;
        let updated = (created + Duration::seconds((h >> 20) as i64 % (90 * 86_400))).min(end);
        (created, updated)
    }
}

impl Snapshot {
    /// Row `key` as of `at`, or `None` if it did not exist yet.
    pub fn state_at(&self, key: u64, at: DateTime<Utc>) -> Option<RowState> {
        let mut state = if key < self.base_rows {
            let (created, updated) = self.generator.base_times(self.schema.name, key, self.base_rows);
            (created <= at).then_some(RowState { key, created, updated, version: 0, deleted_at: None })
        } else {
            None
        };
        if let Some(events) = self.overlay.get(&key) {
            for event in events.iter().take_while(|e| e.at <= at) {
                match event.kind {
                    EventKind::Insert => {
                        state =
                            Some(RowState { key, created: event.at, updated: event.at, version: 0, deleted_at: None })
                    }
                    EventKind::Update => {
                        if let Some(s) = state.as_mut() {
                            s.updated = event.at;
                            s.version += 1;
                        }
                    }
                    EventKind::Delete => {
                        if let Some(s) = state.as_mut() {
                            s.deleted_at = Some(event.at);
                        }
                    }
                }
            }
        }
        state
    }

    /// Every key that may hold a row: generated ones, then inserted ones.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.base_rows).chain(self.overlay.range(INSERTED_KEYS..).map(|(k, _)| *k))
    }

    /// The typed value of field `index` of a row (for WHERE clauses).
    pub fn value(&self, index: usize, row: &RowState) -> Value {
        let field = self.schema.fields[index];
        let h = self.field_hash(index, row);
        match field.ty {
            FieldType::Id | FieldType::Ref(_) | FieldType::User | FieldType::Text | FieldType::Free => {
                let mut out = Vec::new();
                self.write_value(index, row, &mut out);
                if out.is_empty() { Value::Null } else { Value::Text(String::from_utf8_lossy(&out).into_owned()) }
            }
            FieldType::Created => Value::DateTime(row.created),
            FieldType::Updated => Value::DateTime(row.updated),
            FieldType::Decimal => decimal(h).map_or(Value::Null, |cents| Value::Number(cents as f64 / 100.0)),
            FieldType::Integer => Value::Number((h % 1000) as f64),
            FieldType::Boolean => Value::Bool(h & 1 == 1),
            FieldType::Date => Value::Date(self.date(h)),
            FieldType::DateTime => Value::DateTime(self.date_time(h)),
        }
    }

    fn field_hash(&self, index: usize, row: &RowState) -> u64 {
        mix(self.generator.salt(self.schema.name)
            ^ row.key.wrapping_mul(0x9E37_79B9)
            ^ ((index as u64) << 48)
            ^ (u64::from(row.version) << 32))
    }

    fn date(&self, h: u64) -> NaiveDate {
        (self.generator.genesis + Duration::days((h % 2200) as i64)).date_naive()
    }

    fn date_time(&self, h: u64) -> DateTime<Utc> {
        self.generator.genesis + Duration::seconds((h % (self.generator.history.num_seconds().max(1) as u64)) as i64)
    }

    /// Writes field `index` of a row as Zuora renders it, unquoted (the CSV writer quotes).
    pub fn write_value(&self, index: usize, row: &RowState, out: &mut Vec<u8>) {
        let field = self.schema.fields[index];
        let h = self.field_hash(index, row);
        let g = &self.generator;
        match field.ty {
            FieldType::Id => g.id(self.schema.name, row.key, out),
            FieldType::Created => write_datetime(out, row.created),
            FieldType::Updated => write_datetime(out, row.updated),
            FieldType::User => g.id("User", h % 25, out),
            FieldType::Ref(target) => {
                let rows = g.base_rows.get(target).copied().unwrap_or(1).max(1);
                g.id(target, h % rows, out);
            }
            FieldType::Text => write_text(out, field.name, h, row),
            FieldType::Free => out.extend_from_slice(free_text(h, row).as_bytes()),
            FieldType::Decimal => {
                if let Some(cents) = decimal(h) {
                    let sign = if cents < 0 { "-" } else { "" };
                    let (whole, frac) = (cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
                    let _ = if frac == 0 {
                        write!(Bytes(out), "{sign}{whole}")
                    } else {
                        write!(Bytes(out), "{sign}{whole}.{frac:02}")
                    };
                }
            }
            FieldType::Integer => {
                let _ = write!(Bytes(out), "{}", h % 1000);
            }
            FieldType::Boolean => out.extend_from_slice(if h & 1 == 1 { b"true" } else { b"false" }),
            FieldType::Date => {
                if !h.is_multiple_of(23) {
                    let _ = write!(Bytes(out), "{}", self.date(h).format("%Y-%m-%d"));
                }
            }
            FieldType::DateTime => {
                if !h.is_multiple_of(19) {
                    write_datetime(out, self.date_time(h));
                }
            }
        }
    }
}

/// Cents, or `None` (null) now and then.
fn decimal(h: u64) -> Option<i64> {
    if h.is_multiple_of(29) { None } else { Some((h % 2_000_000) as i64 - 500_000) }
}

/// `2024-01-31T17:04:05+0000`.
pub fn write_datetime(out: &mut Vec<u8>, at: DateTime<Utc>) {
    let _ = write!(Bytes(out), "{}", at.format("%Y-%m-%dT%H:%M:%S+0000"));
}

const FIRST: &[&str] = &["Anna", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "José"];
const LAST: &[&str] = &["Smith", "Müller", "O'Brien", "Nakamura", "García", "Kowalski", "Nguyen", "Okafor"];
const STATUS: &[&str] = &["Active", "Cancelled", "Draft", "Expired", "Pending Activation"];
const CURRENCY: &[&str] = &["USD", "EUR", "GBP", "AUD", "JPY"];
const KIND: &[&str] = &["Recurring", "OneTime", "Usage", "Flat Fee Pricing", "Per Unit Pricing"];
const COUNTRY: &[&str] = &["United States", "United Kingdom", "Germany", "Japan", "Australia", "France"];
const CITY: &[&str] = &["New York", "London", "Berlin", "Tokyo", "Sydney", "Paris", "São Paulo"];

fn pick<'a>(list: &[&'a str], h: u64) -> &'a str {
    list[(h >> 8) as usize % list.len()]
}

fn write_text(out: &mut Vec<u8>, field: &str, h: u64, row: &RowState) {
    if h.is_multiple_of(31) {
        return; // null
    }
    let _ = if field.ends_with("Number") {
        write!(Bytes(out), "{}{:08}", &field[..1], row.key % 100_000_000)
    } else if field.ends_with("Email") {
        write!(Bytes(out), "user{}.v{}@example.com", row.key, row.version)
    } else if field.ends_with("Status") || field == "Status" {
        write!(Bytes(out), "{}", pick(STATUS, h))
    } else if field.ends_with("Currency") || field == "Currency" {
        write!(Bytes(out), "{}", pick(CURRENCY, h))
    } else if field.contains("Type") || field.ends_with("Model") {
        write!(Bytes(out), "{}", pick(KIND, h))
    } else if field == "Country" {
        write!(Bytes(out), "{}", pick(COUNTRY, h))
    } else if field == "City" {
        write!(Bytes(out), "{}", pick(CITY, h))
    } else if field == "FirstName" {
        write!(Bytes(out), "{}", pick(FIRST, h))
    } else if field == "LastName" {
        write!(Bytes(out), "{}", pick(LAST, h))
    } else if field == "CreditCardMaskNumber" {
        write!(Bytes(out), "************{:04}", h % 10_000)
    } else if field == "UOM" {
        write!(Bytes(out), "{}", pick(&["Each", "GB", "Seat", "Hour"], h))
    } else {
        write!(
            Bytes(out),
            "{} {} {}",
            pick(LAST, h),
            pick(&["Ltd", "GmbH", "Inc.", "& Sons, Co."], h >> 3),
            row.key % 1_000_000
        )
    };
}

/// Free text: a third of it hostile to naive CSV handling.
fn free_text(h: u64, row: &RowState) -> String {
    match h % 12 {
        0 => String::new(),
        1 => format!("Renewal, discount 10%, v{}", row.version),
        2 => format!("Customer said \"call me back\" (v{})", row.version),
        3 => format!("Line one\nLine two of note {}", row.key),
        4 => "Windows line\r\nending".to_owned(),
        5 => format!("Müller – Straße 5, München v{}", row.version),
        6 => "東京の顧客 🚀 ünïcödé".to_owned(),
        7 => "ends with a quote\"".to_owned(),
        8 => "Multi\n\nparagraph, \"quoted\", done".to_owned(),
        _ => format!("Plain note {} v{}", row.key, row.version),
    }
}

/// A typed value for comparisons.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null.
    Null,
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A date.
    Date(NaiveDate),
    /// An instant.
    DateTime(DateTime<Utc>),
}

/// `fmt::Write` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
