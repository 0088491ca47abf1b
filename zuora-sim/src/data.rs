//! Tables: generated rows (pure functions of seed, object, key and version) plus an overlay of changes.
//!
//! A table of N rows costs nothing until it is read: row `k < N` is computed when needed, so a 10 GiB file is
//! generated row by row while it is sent. Changes (insert, update, delete) are events in an overlay, kept with
//! their instants, so the state of any row as of any instant can be read back: a job's file is fixed by its
//! window, however the table changes afterwards. The overlay is copy-on-write behind an `Arc`: a job keeps a
//! snapshot for the price of a reference count.

use crate::schema::{FieldType, ObjectSchema, Path, Step};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono::{Datelike, Timelike};
use std::collections::BTreeMap;
use std::collections::HashMap;
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
    /// Its values changed and `UpdatedDate` did not move: Zuora's fields whose change does not date the row (a
    /// charge's `ChargedThroughDate` moved by a bill run, for one). No increment reports it.
    UndatedUpdate,
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
    /// The object's salt.
    salt: u64,
    /// Per field, what generating it needs, worked out once (a file has millions of rows).
    plans: Arc<Vec<FieldPlan>>,
}

/// What generating one field needs.
#[derive(Debug, Clone, Copy)]
struct FieldPlan {
    ty: FieldType,
    text: TextKind,
    /// For references: the referenced object's salt and rows.
    ref_salt: u64,
    ref_rows: u64,
}

/// The look of a short text field, from its name.
#[derive(Debug, Clone, Copy)]
enum TextKind {
    Number(u8),
    Email,
    Status,
    Currency,
    Kind,
    Country,
    City,
    FirstName,
    LastName,
    CardMask,
    Unit,
    Company,
}

impl TextKind {
    fn of(field: &str) -> Self {
        if field == "CreditCardMaskNumber" {
            Self::CardMask
        } else if field.ends_with("Number") {
            Self::Number(field.as_bytes()[0])
        } else if field.ends_with("Email") {
            Self::Email
        } else if field.ends_with("Status") {
            Self::Status
        } else if field.ends_with("Currency") {
            Self::Currency
        } else if field.contains("Type") || field.ends_with("Model") {
            Self::Kind
        } else {
            match field {
                "Country" => Self::Country,
                "City" => Self::City,
                "FirstName" => Self::FirstName,
                "LastName" => Self::LastName,
                "UOM" => Self::Unit,
                _ => Self::Company,
            }
        }
    }
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

/// Rows an object Zuora keeps only ids of here (a journal entry) is taken to have, for the links to it.
const UNSIMULATED_ROWS: u64 = 1000;

/// The row of the referenced object that reference field `index` of row `key` points at: fixed for the row's
/// life (a charge never moves to another rate plan), so joined ids never change under a row.
fn referenced(object_salt: u64, index: usize, key: u64, rows: u64) -> u64 {
    mix(object_salt ^ key.wrapping_mul(0x9E37_79B9) ^ ((index as u64) << 48)) % rows.max(1)
}

impl Generator {
    fn salt(&self, object: &str) -> u64 {
        mix(self.seed ^ name_hash(object))
    }

    /// Generated rows of `object`, for references to it.
    fn rows_of(&self, object: &str) -> u64 {
        self.base_rows.get(object).copied().unwrap_or(UNSIMULATED_ROWS).max(1)
    }

    /// The key of the row reached from row `key` by `steps`.
    pub fn follow(&self, steps: &[Step], key: u64) -> u64 {
        steps.iter().fold(key, |key, step| match *step {
            Step::Ref { object, field, target } => referenced(self.salt(object), field, key, self.rows_of(target)),
            Step::Link { object, relation, target } => {
                mix(self.salt(object) ^ name_hash(relation).rotate_left(23) ^ key.wrapping_mul(0x2545_F491))
                    % self.rows_of(target)
            }
        })
    }

    /// The 32-hex id of row `key` of `object`; distinct keys give distinct ids (`mix` is a bijection).
    pub fn id(&self, object: &str, key: u64, out: &mut Vec<u8>) {
        id_with_salt(self.salt(object), key, out);
    }

    /// Creation and last-change instants of generated row `key` of `rows`, for the object with this salt.
    fn base_times_salted(&self, salt: u64, key: u64, rows: u64) -> (DateTime<Utc>, DateTime<Utc>) {
        let span = self.history.num_seconds().max(1) as u64;
        let step = (span / rows.max(1)).max(1);
        let h = mix(salt ^ key.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let created_offset = (key.saturating_mul(span) / rows.max(1)) + h % step;
        let created = self.genesis + Duration::seconds(created_offset.min(span - 1) as i64);
        let end = self.genesis + self.history;
        let updated = (created + Duration::seconds((h >> 20) as i64 % (90 * 86_400))).min(end);
        (created, updated)
    }
}

/// The id of row `key` of the object with this salt.
fn id_with_salt(salt: u64, key: u64, out: &mut Vec<u8>) {
    push_hex(out, mix(key ^ salt.rotate_left(17)));
    push_hex(out, mix(key ^ salt));
}

fn push_hex(out: &mut Vec<u8>, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits: [u8; 16] = std::array::from_fn(|i| DIGITS[((value >> ((15 - i) * 4)) & 0xF) as usize]);
    out.extend_from_slice(&digits);
}

/// Writes `value` in decimal, zero-padded to `width` digits.
fn push_number(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    while value > 0 || n < width.max(1) {
        digits[n] = b'0' + (value % 10) as u8;
        value /= 10;
        n += 1;
    }
    out.extend(digits[..n].iter().rev());
}

impl Snapshot {
    /// A snapshot of a table; works out per field what generating it needs.
    pub fn new(
        schema: Arc<ObjectSchema>,
        base_rows: u64,
        overlay: Arc<BTreeMap<u64, Vec<Event>>>,
        generator: Generator,
    ) -> Self {
        let plans = schema
            .fields
            .iter()
            .map(|f| {
                let (ref_salt, ref_rows) = match f.ty {
                    FieldType::Ref(target) => (generator.salt(target), generator.rows_of(target)),
                    FieldType::User => (generator.salt("User"), 25),
                    _ => (0, 1),
                };
                FieldPlan { ty: f.ty, text: TextKind::of(f.name), ref_salt, ref_rows }
            })
            .collect();
        let salt = generator.salt(schema.name);
        Self { schema, base_rows, overlay, generator, salt, plans: Arc::new(plans) }
    }

    /// Row `key` as of `at`, or `None` if it did not exist yet.
    pub fn state_at(&self, key: u64, at: DateTime<Utc>) -> Option<RowState> {
        let mut state = if key < self.base_rows {
            let (created, updated) = self.generator.base_times_salted(self.salt, key, self.base_rows);
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
                    EventKind::UndatedUpdate => {
                        if let Some(s) = state.as_mut() {
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
        let plan = self.plans[index];
        let h = self.field_hash(index, row);
        match plan.ty {
            FieldType::Id => id_with_salt(self.salt, row.key, out),
            FieldType::Created => write_datetime(out, row.created),
            FieldType::Updated => write_datetime(out, row.updated),
            FieldType::Ref(_) => id_with_salt(plan.ref_salt, referenced(self.salt, index, row.key, plan.ref_rows), out),
            FieldType::User => id_with_salt(plan.ref_salt, h % plan.ref_rows, out),
            FieldType::Text => write_text(out, plan.text, h, row),
            FieldType::Free => write_free_text(out, h, row),
            FieldType::Decimal => {
                if let Some(cents) = decimal(h) {
                    if cents < 0 {
                        out.push(b'-');
                    }
                    let (whole, frac) = (cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
                    push_number(out, whole, 1);
                    if frac != 0 {
                        out.push(b'.');
                        push_number(out, frac, 2);
                    }
                }
            }
            FieldType::Integer => push_number(out, h % 1000, 1),
            FieldType::Boolean => out.extend_from_slice(if h & 1 == 1 { b"true" } else { b"false" }),
            FieldType::Date => {
                if !h.is_multiple_of(23) {
                    write_date(out, self.date(h));
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

/// A field read through a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// How the related row is reached.
    pub path: Path,
    /// The field read there (an index into the related object's schema), or `None` for its id.
    pub field: Option<usize>,
    /// The field's canonical name.
    pub field_name: &'static str,
}

/// The snapshots joined fields are read from, by object.
pub type Related = HashMap<&'static str, Snapshot>;

/// Writes a field read through a relation from row `key`, as the related row stood at `at`: its id whatever
/// became of it, any other field only while it lives (empty otherwise).
pub fn write_joined(
    generator: &Generator,
    related: &Related,
    join: &Join,
    key: u64,
    at: DateTime<Utc>,
    out: &mut Vec<u8>,
) {
    let target_key = generator.follow(&join.path.steps, key);
    let Some(field) = join.field else {
        id_with_salt(generator.salt(join.path.target), target_key, out);
        return;
    };
    let Some(snapshot) = related.get(join.path.target) else { return };
    if let Some(row) = snapshot.state_at(target_key, at).filter(|row| row.deleted_at.is_none()) {
        snapshot.write_value(field, &row, out);
    }
}

/// Cents, or `None` (null) now and then.
fn decimal(h: u64) -> Option<i64> {
    if h.is_multiple_of(29) { None } else { Some((h % 2_000_000) as i64 - 500_000) }
}

/// `2024-01-31T17:04:05+0000`.
pub fn write_datetime(out: &mut Vec<u8>, at: DateTime<Utc>) {
    write_date(out, at.date_naive());
    let time = at.time();
    out.push(b'T');
    push_number(out, u64::from(time.hour()), 2);
    out.push(b':');
    push_number(out, u64::from(time.minute()), 2);
    out.push(b':');
    push_number(out, u64::from(time.second()), 2);
    out.extend_from_slice(b"+0000");
}

/// `2019-03-12`.
fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    push_number(out, date.year().max(0) as u64, 4);
    out.push(b'-');
    push_number(out, u64::from(date.month()), 2);
    out.push(b'-');
    push_number(out, u64::from(date.day()), 2);
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

fn write_text(out: &mut Vec<u8>, kind: TextKind, h: u64, row: &RowState) {
    if h.is_multiple_of(31) {
        return; // null
    }
    let word = |list: &[&'static str]| pick(list, h).as_bytes();
    match kind {
        TextKind::Number(prefix) => {
            out.push(prefix);
            push_number(out, row.key % 100_000_000, 8);
        }
        TextKind::Email => {
            out.extend_from_slice(b"user");
            push_number(out, row.key, 1);
            out.extend_from_slice(b".v");
            push_number(out, u64::from(row.version), 1);
            out.extend_from_slice(b"@example.com");
        }
        TextKind::CardMask => {
            out.extend_from_slice(b"************");
            push_number(out, h % 10_000, 4);
        }
        TextKind::Status => out.extend_from_slice(word(STATUS)),
        TextKind::Currency => out.extend_from_slice(word(CURRENCY)),
        TextKind::Kind => out.extend_from_slice(word(KIND)),
        TextKind::Country => out.extend_from_slice(word(COUNTRY)),
        TextKind::City => out.extend_from_slice(word(CITY)),
        TextKind::FirstName => out.extend_from_slice(word(FIRST)),
        TextKind::LastName => out.extend_from_slice(word(LAST)),
        TextKind::Unit => out.extend_from_slice(word(&["Each", "GB", "Seat", "Hour"])),
        TextKind::Company => {
            out.extend_from_slice(pick(LAST, h).as_bytes());
            out.push(b' ');
            out.extend_from_slice(pick(&["Ltd", "GmbH", "Inc.", "& Sons, Co."], h >> 3).as_bytes());
            out.push(b' ');
            push_number(out, row.key % 1_000_000, 1);
        }
    }
}

/// Free text: a third of it hostile to naive CSV handling.
fn write_free_text(out: &mut Vec<u8>, h: u64, row: &RowState) {
    let version = |out: &mut Vec<u8>| {
        out.extend_from_slice(b" v");
        push_number(out, u64::from(row.version), 1);
    };
    match h % 12 {
        0 => {}
        1 => {
            out.extend_from_slice(b"Renewal, discount 10%,");
            version(out);
        }
        2 => {
            out.extend_from_slice(b"Customer said \"call me back\"");
            version(out);
        }
        3 => {
            out.extend_from_slice(b"Line one\nLine two of note ");
            push_number(out, row.key, 1);
        }
        4 => out.extend_from_slice(b"Windows line\r\nending"),
        5 => {
            out.extend_from_slice("Müller – Straße 5, München".as_bytes());
            version(out);
        }
        6 => out.extend_from_slice("東京の顧客 🚀 ünïcödé".as_bytes()),
        7 => out.extend_from_slice(b"ends with a quote\""),
        8 => out.extend_from_slice(b"Multi\n\nparagraph, \"quoted\", done"),
        _ => {
            out.extend_from_slice(b"Plain note ");
            push_number(out, row.key, 1);
            version(out);
        }
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

impl Value {
    /// The order `ORDER BY` sorts values in: nulls first, then by value (values of different kinds by kind).
    pub fn sort_order(&self, other: &Value) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let rank = |v: &Value| match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::Date(_) => 3,
            Value::DateTime(_) => 4,
            Value::Text(_) => 5,
        };
        match (self, other) {
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            (Value::Number(a), Value::Number(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Date(a), Value::Date(b)) => a.cmp(b),
            (Value::DateTime(a), Value::DateTime(b)) => a.cmp(b),
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}
