//! A published file read as typed rows: its CSV cut into Arrow record batches of the table's columns, and the Ids
//! of its deleted rows, by the file's own schema (docs/messages.md, "The file's schema"; docs/tables.md, "Types").

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use common::messages::FileSchema;
use common::zuora::{DeletedFormat, ZuoraTime, wall_clock_to_utc};
use std::sync::Arc;

/// Decimals are kept exactly, at this precision and scale: Zuora's amounts, prices and quantities fit.
pub const DECIMAL_PRECISION: u8 = 38;
/// See [`DECIMAL_PRECISION`]; a value with more decimal places than this is refused, not rounded.
pub const DECIMAL_SCALE: i8 = 9;
/// The column every table has besides the file's: when Zuora produced the row's version (the file's `executedAt`).
pub const EXECUTED_AT: &str = "_zle_executed_at";

/// How a column's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `text`, `picklist`, `zoql`, and any type this project does not know.
    Text,
    /// `boolean`.
    Boolean,
    /// `integer`.
    Integer,
    /// `decimal`: exact, [`DECIMAL_PRECISION`], [`DECIMAL_SCALE`].
    Decimal,
    /// `date`.
    Date,
    /// `datetime`, `timestamp`: an instant, microseconds, UTC.
    Timestamp,
}

impl ColumnType {
    /// The type of a column Zuora describes as `zuora_type`.
    pub fn of_zuora(zuora_type: &str) -> Self {
        match zuora_type.to_ascii_lowercase().as_str() {
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "decimal" => Self::Decimal,
            "date" => Self::Date,
            "datetime" | "timestamp" => Self::Timestamp,
            _ => Self::Text,
        }
    }

    /// Its Arrow type.
    pub fn arrow(self) -> DataType {
        match self {
            Self::Text => DataType::Utf8,
            Self::Boolean => DataType::Boolean,
            Self::Integer => DataType::Int64,
            Self::Decimal => DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// A table column's name for a header column of a file of `object`: the object's own fields by their name
/// (`Account.Balance` -> `Balance`), joined ones with their relation (`BillToContact.Id` -> `BillToContact_Id`):
/// names every engine takes without quoting.
pub fn table_column_name(object: &str, header_name: &str) -> String {
    match header_name.split_once('.') {
        Some((relation, field)) if relation.eq_ignore_ascii_case(object) => field.to_owned(),
        Some((relation, field)) => format!("{relation}_{field}"),
        None => header_name.to_owned(),
    }
}

/// A file that cannot go into its table, and why (the message goes to the writer's DLQ with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// How a file's records become table rows.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The table's columns (the file's, the deleted flag left out, then [`EXECUTED_AT`]).
    pub schema: SchemaRef,
    /// For each table column but the last, its index in a record and its type.
    sources: Vec<(usize, ColumnType)>,
    /// The Id's index in a record, and its table column's name.
    id: (usize, String),
    deleted: Option<(usize, DeletedFormat)>,
    zone: Tz,
}

impl Layout {
    /// The layout of a file of `object` with `schema`.
    pub fn of(object: &str, schema: &FileSchema) -> Result<Self, Refused> {
        let at = |name: &str| schema.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name));
        let id_at = at(&schema.id_column)
            .ok_or_else(|| Refused(format!("the Id column {} is not in the file", schema.id_column)))?;
        let deleted = match &schema.deleted {
            Some(flag) => Some((
                at(&flag.column)
                    .ok_or_else(|| Refused(format!("the deleted column {} is not in the file", flag.column)))?,
                flag.format,
            )),
            None => None,
        };
        let zone: Tz =
            schema.time_zone.parse().map_err(|_| Refused(format!("unknown time zone {:?}", schema.time_zone)))?;
        let mut fields = Vec::new();
        let mut sources = Vec::new();
        for (index, column) in schema.columns.iter().enumerate() {
            if Some(index) == deleted.map(|(d, _)| d) {
                continue;
            }
            let name = table_column_name(object, &column.name);
            if name.eq_ignore_ascii_case(EXECUTED_AT)
                || fields.iter().any(|f: &Field| f.name().eq_ignore_ascii_case(&name))
            {
                return Err(Refused(format!("two columns of the file are both named {name} in the table")));
            }
            let ty = ColumnType::of_zuora(&column.zuora_type);
            // Nullable in the table whatever the file says: a column added later has no value in earlier rows.
            fields.push(Field::new(name, ty.arrow(), true));
            sources.push((index, ty));
        }
        fields.push(Field::new(EXECUTED_AT, ColumnType::Timestamp.arrow(), false));
        let id = (id_at, table_column_name(object, &schema.columns[id_at].name));
        Ok(Self { schema: Arc::new(Schema::new(fields)), sources, id, deleted, zone })
    }

    /// The table column holding the Id.
    pub fn id_column(&self) -> &str {
        &self.id.1
    }

    /// Reads `records` (the file's CSV, its header first) in batches of at most `batch_rows` rows.
    pub fn read<R: std::io::Read>(&self, csv: R, executed_at: DateTime<Utc>, batch_rows: usize) -> Batches<'_, R> {
        let reader = csv::ReaderBuilder::new().has_headers(true).from_reader(csv);
        Batches { layout: self, records: reader.into_records(), executed_at, batch_rows, line: 1 }
    }
}

/// A file read a batch at a time.
pub struct Batches<'a, R: std::io::Read> {
    layout: &'a Layout,
    records: csv::StringRecordsIntoIter<R>,
    executed_at: DateTime<Utc>,
    batch_rows: usize,
    line: u64,
}

/// Some rows of a file: those to upsert, and the Ids it deletes.
#[derive(Debug)]
pub struct Rows {
    /// Live rows, in the table's columns.
    pub upserts: RecordBatch,
    /// Ids of rows the file marks deleted.
    pub deleted: Vec<String>,
}

impl<R: std::io::Read> Iterator for Batches<'_, R> {
    type Item = Result<Rows, Refused>;

    fn next(&mut self) -> Option<Self::Item> {
        let layout = self.layout;
        let mut builders: Vec<ColumnBuilder> = layout.sources.iter().map(|(_, ty)| ColumnBuilder::new(*ty)).collect();
        let mut deleted = Vec::new();
        let mut live = 0;
        while live + deleted.len() < self.batch_rows {
            let record = match self.records.next() {
                Some(Ok(record)) => record,
                Some(Err(e)) => return Some(Err(Refused(format!("CSV: {e}")))),
                None => break,
            };
            self.line += 1;
            let field = |i: usize| record.get(i).unwrap_or_default();
            if layout.deleted.is_some_and(|(at, format)| is_set(field(at), format)) {
                deleted.push(field(layout.id.0).to_owned());
                continue;
            }
            for (column, ((index, _), builder)) in layout.sources.iter().zip(&mut builders).enumerate() {
                if let Err(reason) = builder.append(field(*index), layout.zone) {
                    let name = layout.schema.field(column).name();
                    return Some(Err(Refused(format!("record {}: {name}: {reason}", self.line - 1))));
                }
            }
            live += 1;
        }
        if live == 0 && deleted.is_empty() {
            return None;
        }
        let mut columns: Vec<ArrayRef> = builders.into_iter().map(ColumnBuilder::finish).collect();
        let executed = TimestampMicrosecondArray::from(vec![self.executed_at.timestamp_micros(); live]);
        columns.push(Arc::new(executed.with_timezone("UTC")));
        Some(
            RecordBatch::try_new(layout.schema.clone(), columns)
                .map(|upserts| Rows { upserts, deleted })
                .map_err(|e| Refused(e.to_string())),
        )
    }
}

/// Whether a deleted flag is set.
fn is_set(value: &str, format: DeletedFormat) -> bool {
    match format {
        DeletedFormat::Boolean => value.eq_ignore_ascii_case("true"),
        DeletedFormat::Numeric => value == "1",
    }
}

/// One column being built.
enum ColumnBuilder {
    Text(StringBuilder),
    Boolean(BooleanBuilder),
    Integer(Int64Builder),
    Decimal(Decimal128Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Text => Self::Text(StringBuilder::new()),
            ColumnType::Boolean => Self::Boolean(BooleanBuilder::new()),
            ColumnType::Integer => Self::Integer(Int64Builder::new()),
            ColumnType::Decimal => Self::Decimal(Decimal128Builder::new().with_data_type(ty.arrow())),
            ColumnType::Date => Self::Date(Date32Builder::new()),
            ColumnType::Timestamp => Self::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
        }
    }

    /// Appends a CSV value; Zuora writes null as an empty field.
    fn append(&mut self, value: &str, zone: Tz) -> Result<(), String> {
        let empty = value.is_empty();
        match self {
            Self::Text(b) => b.append_option((!empty).then_some(value)),
            Self::Boolean(b) => b.append_option(if empty { None } else { Some(parse_boolean(value)?) }),
            Self::Integer(b) => b.append_option(if empty {
                None
            } else {
                Some(value.parse::<i64>().map_err(|e| format!("{value:?} is not an integer: {e}"))?)
            }),
            Self::Decimal(b) => b.append_option(if empty { None } else { Some(parse_decimal(value)?) }),
            Self::Date(b) => b.append_option(if empty { None } else { Some(parse_date(value)?) }),
            Self::Timestamp(b) => b.append_option(if empty { None } else { Some(parse_instant(value, zone)?) }),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Text(mut b) => Arc::new(b.finish()),
            Self::Boolean(mut b) => Arc::new(b.finish()),
            Self::Integer(mut b) => Arc::new(b.finish()),
            Self::Decimal(mut b) => Arc::new(b.finish()),
            Self::Date(mut b) => Arc::new(b.finish()),
            Self::Timestamp(mut b) => Arc::new(b.finish()),
        }
    }
}

fn parse_boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{value:?} is not a boolean")),
    }
}

/// A bare decimal (`-11095`, `12.5`, `1E+2`) scaled to [`DECIMAL_SCALE`], refused rather than rounded when it has
/// more decimal places or digits than the column holds.
fn parse_decimal(value: &str) -> Result<i128, String> {
    let refused = || format!("{value:?} is not a decimal of at most {DECIMAL_SCALE} decimal places");
    let (mantissa, exponent) = match value.find(['e', 'E']) {
        Some(at) => (&value[..at], value[at + 1..].parse::<i32>().map_err(|_| refused())?),
        None => (value, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit()) {
        return Err(refused());
    }
    // The digits as one integer, and where the decimal point is once the exponent is applied.
    let places = fraction.len() as i32 - exponent;
    let mut unscaled: i128 = 0;
    for c in whole.chars().chain(fraction.chars()) {
        unscaled =
            unscaled.checked_mul(10).and_then(|u| u.checked_add(i128::from(c as u8 - b'0'))).ok_or_else(refused)?;
    }
    let shift = i32::from(DECIMAL_SCALE) - places;
    let scaled = if shift >= 0 {
        10i128.checked_pow(shift as u32).and_then(|p| unscaled.checked_mul(p)).ok_or_else(refused)?
    } else {
        let divisor = 10i128.checked_pow((-shift) as u32).ok_or_else(refused)?;
        if unscaled % divisor != 0 {
            return Err(refused());
        }
        unscaled / divisor
    };
    if scaled.unsigned_abs() >= 10u128.pow(u32::from(DECIMAL_PRECISION)) {
        return Err(refused());
    }
    Ok(if negative { -scaled } else { scaled })
}

/// `2019-03-12`, or `03/01/2013` as a 2014 sample of Zuora's writes dates, as days since 1970-01-01.
fn parse_date(value: &str) -> Result<i32, String> {
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(value, "%m/%d/%Y"))
        .map_err(|_| format!("{value:?} is not a date"))?;
    Ok((date - NaiveDate::default()).num_days() as i32)
}

/// A datetime with its offset (`2026-08-04T20:11:15-0700`), a wall-clock one, or a bare date (Zuora writes a datetime
/// at midnight of its system time so), both read in `zone`; microseconds since the epoch.
fn parse_instant(value: &str, zone: Tz) -> Result<i64, String> {
    let at = match ZuoraTime::parse(value) {
        Some(ZuoraTime::Instant(at)) => Some(at),
        Some(ZuoraTime::WallClock(naive)) => wall_clock_to_utc(naive, zone),
        None => NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .and_then(|date| wall_clock_to_utc(date.and_time(chrono::NaiveTime::MIN), zone)),
    };
    at.map(|at| at.timestamp_micros()).ok_or_else(|| format!("{value:?} is not a datetime"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type, Int64Type, TimestampMicrosecondType};
    use common::messages::{DeletedColumn, FileColumn};

    fn schema(columns: &[(&str, &str)]) -> FileSchema {
        FileSchema {
            columns: columns
                .iter()
                .map(|(name, ty)| FileColumn { name: (*name).into(), zuora_type: (*ty).into(), nullable: true })
                .collect(),
            id_column: "Account.Id".into(),
            deleted: Some(DeletedColumn { column: "Account.IsDeleted".into(), format: DeletedFormat::Boolean }),
            time_zone: "America/Los_Angeles".into(),
        }
    }

    #[test]
    fn every_zuora_type_is_read_into_its_column_and_deleted_rows_give_their_ids() {
        let file = schema(&[
            ("Account.IsDeleted", "boolean"),
            ("Account.Id", "text"),
            ("Account.Balance", "decimal"),
            ("Account.BillCycleDay", "integer"),
            ("Account.AutoPay", "boolean"),
            ("Account.LastInvoiceDate", "date"),
            ("Account.UpdatedDate", "datetime"),
            ("BillToContact.Id", "text"),
        ]);
        let layout = Layout::of("Account", &file).unwrap();
        let names: Vec<&str> = layout.schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "Id",
                "Balance",
                "BillCycleDay",
                "AutoPay",
                "LastInvoiceDate",
                "UpdatedDate",
                "BillToContact_Id",
                EXECUTED_AT
            ]
        );
        let csv = "Account.IsDeleted,Account.Id,Account.Balance,Account.BillCycleDay,Account.AutoPay,\
                   Account.LastInvoiceDate,Account.UpdatedDate,BillToContact.Id\n\
                   false,a1,-11095,1,true,2019-03-12,2026-08-04T20:11:15-0700,c1\n\
                   true,a2,,,,,,\n\
                   false,a3,12.123456789,,false,03/01/2013,2026-08-04,\n";
        let executed_at: DateTime<Utc> = "2026-08-05T00:00:00Z".parse().unwrap();
        let mut batches = layout.read(csv.as_bytes(), executed_at, 100);
        let rows = batches.next().unwrap().unwrap();
        assert!(batches.next().is_none());
        assert_eq!(rows.deleted, ["a2"]);
        let batch = rows.upserts;
        assert_eq!(batch.num_rows(), 2);
        let balance = batch.column(1).as_primitive::<Decimal128Type>();
        assert_eq!((balance.value(0), balance.value(1)), (-11_095_000_000_000, 12_123_456_789));
        assert!(batch.column(2).is_null(1));
        assert_eq!(batch.column(2).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(
            batch.column(4).as_primitive::<Date32Type>().value(1),
            (NaiveDate::from_ymd_opt(2013, 3, 1).unwrap() - NaiveDate::default()).num_days() as i32
        );
        let updated = batch.column(5).as_primitive::<TimestampMicrosecondType>();
        let instant = |micros: i64| DateTime::from_timestamp_micros(micros).unwrap().to_rfc3339();
        assert_eq!(instant(updated.value(0)), "2026-08-05T03:11:15+00:00");
        // A bare date in a datetime column is midnight of Zuora's system time (Pacific, daylight time in August).
        assert_eq!(instant(updated.value(1)), "2026-08-04T07:00:00+00:00");
        assert!(batch.column(6).is_null(1));
        let executed = batch.column(7).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(instant(executed.value(1)), executed_at.to_rfc3339());
    }

    #[test]
    fn a_value_its_column_cannot_hold_refuses_the_file_with_the_record_and_column() {
        let layout =
            Layout::of("Account", &schema(&[("Account.Id", "text"), ("Account.Balance", "decimal")])).unwrap_err();
        assert!(layout.0.contains("deleted column"), "{layout}");
        let file = FileSchema { deleted: None, ..schema(&[("Account.Id", "text"), ("Account.Balance", "decimal")]) };
        let layout = Layout::of("Account", &file).unwrap();
        let error = layout.read("Account.Id,Account.Balance\na,1\nb,0.0000000001\n".as_bytes(), Utc::now(), 10).next();
        assert_eq!(
            error.unwrap().unwrap_err().0,
            "record 2: Balance: \"0.0000000001\" is not a decimal of at most 9 decimal places"
        );
        for (text, scaled) in
            [("1E+2", 100_000_000_000), ("-0.5", -500_000_000), ("+7", 7_000_000_000), ("2.50e-1", 250_000_000)]
        {
            assert_eq!(parse_decimal(text), Ok(scaled), "{text}");
        }
        for bad in ["", "-", ".", "1.2.3", "abc", "1e", "99999999999999999999999999999999"] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
        let twice = schema(&[("Account.IsDeleted", "boolean"), ("Account.Id", "text"), ("Account.Id", "text")]);
        assert!(Layout::of("Account", &twice).unwrap_err().0.contains("both named Id"));
    }

    #[test]
    fn a_file_is_read_in_batches_of_the_size_asked() {
        let file = FileSchema { deleted: None, ..schema(&[("Account.Id", "text")]) };
        let layout = Layout::of("Account", &file).unwrap();
        let csv: String =
            std::iter::once("Account.Id\n".to_owned()).chain((0..25).map(|i| format!("a{i}\n"))).collect();
        let sizes: Vec<usize> =
            layout.read(csv.as_bytes(), Utc::now(), 10).map(|rows| rows.unwrap().upserts.num_rows()).collect();
        assert_eq!(sizes, [10, 10, 5]);
    }
}
