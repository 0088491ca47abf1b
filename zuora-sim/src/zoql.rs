//! The subset of Export ZOQL the simulator understands:
//! `SELECT f, ... FROM Object [WHERE condition] [ORDER BY f [ASC|DESC], ...]`, conditions being comparisons with a
//! literal, `f IS [NOT] NULL`, `AND`, `OR` and parentheses. Selected fields may be joined through a relation of
//! the FROM object (`Account.Id`, `Product.Name`); conditions and `ORDER BY` take the object's own fields.

use crate::data::{Join, RowState, Snapshot, Value};
use crate::schema::{FieldType, ObjectSchema};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use std::sync::Arc;

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Selected columns, in order.
    pub fields: Vec<Column>,
    /// The filter.
    pub filter: Option<Condition>,
    /// `ORDER BY`: fields (indexes into the schema), each descending or not; empty for the natural order.
    pub order: Vec<(usize, bool)>,
    /// `LIMIT n`: at most this many records, the first in file order.
    pub limit: Option<u64>,
}

/// A selected column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// A field of the FROM object (an index into its schema).
    Own(usize),
    /// A field of a related row.
    Joined(Join),
}

/// A WHERE condition.
#[derive(Debug, Clone)]
pub enum Condition {
    /// Both.
    And(Box<Condition>, Box<Condition>),
    /// Either.
    Or(Box<Condition>, Box<Condition>),
    /// `field op literal`.
    Compare(usize, Op, Literal),
    /// Always true: what Zuora does with a datetime compared to a space-separated literal.
    Ignored,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`, `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'`
    Text(String),
    /// A number.
    Number(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A text literal compared with a datetime field, parsed once.
    Instant(DateTime<Utc>),
    /// A text literal compared with a date field, parsed once.
    Date(NaiveDate),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Num(f64),
    Op(Op),
    Comma,
    Open,
    Close,
    Star,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => (out.push(Token::Comma), i += 1).1,
            '(' => (out.push(Token::Open), i += 1).1,
            ')' => (out.push(Token::Close), i += 1).1,
            '*' => (out.push(Token::Star), i += 1).1,
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => (s.push('\''), i += 2).1,
                        Some('\'') => break,
                        Some(&ch) => (s.push(ch), i += 1).1,
                    }
                }
                i += 1;
                out.push(Token::Str(s));
            }
            '=' => (out.push(Token::Op(Op::Eq)), i += 1).1,
            '!' if chars.get(i + 1) == Some(&'=') => (out.push(Token::Op(Op::Ne)), i += 2).1,
            '<' if chars.get(i + 1) == Some(&'>') => (out.push(Token::Op(Op::Ne)), i += 2).1,
            '<' if chars.get(i + 1) == Some(&'=') => (out.push(Token::Op(Op::Le)), i += 2).1,
            '>' if chars.get(i + 1) == Some(&'=') => (out.push(Token::Op(Op::Ge)), i += 2).1,
            '<' => (out.push(Token::Op(Op::Lt)), i += 1).1,
            '>' => (out.push(Token::Op(Op::Gt)), i += 1).1,
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                out.push(Token::Num(s.parse().map_err(|_| format!("bad number {s}"))?));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

fn is_keyword(token: Option<&Token>, keyword: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
}

/// The FROM object of a query, without checking the rest (to pick the schema).
pub fn from_object(text: &str) -> Option<String> {
    let tokens = tokens(text).ok()?;
    let at = tokens.iter().position(|t| is_keyword(Some(t), "from"))?;
    match tokens.get(at + 1) {
        Some(Token::Word(w)) => Some(w.clone()),
        _ => None,
    }
}

/// Parses a query against an object's schema; `schemas` (every object) resolve joined fields.
pub fn parse(text: &str, schema: &ObjectSchema, schemas: &[Arc<ObjectSchema>]) -> Result<Query, String> {
    let tokens = tokens(text)?;
    let mut pos = 0;
    if !is_keyword(tokens.first(), "select") {
        return Err("You must specify a select.".into());
    }
    pos += 1;
    let mut fields = Vec::new();
    if tokens.get(pos) == Some(&Token::Star) {
        // `select *`: every field of the object itself, in the schema's order (clients probe a tenant with it).
        fields.extend((0..schema.fields.len()).map(Column::Own));
        pos += 1;
    } else {
        loop {
            match tokens.get(pos) {
                Some(Token::Word(w)) => {
                    fields.push(column(w, schema, schemas)?);
                    pos += 1;
                }
                other => return Err(format!("expected a field name, found {other:?}")),
            }
            match tokens.get(pos) {
                Some(Token::Comma) => pos += 1,
                _ => break,
            }
        }
    }
    if !is_keyword(tokens.get(pos), "from") {
        return Err("expected FROM".into());
    }
    pos += 2; // FROM <object>, checked by the caller's schema lookup
    let filter = if is_keyword(tokens.get(pos), "where") {
        pos += 1;
        let condition = parse_or(&tokens, &mut pos, schema)?;
        Some(condition)
    } else {
        None
    };
    let mut order = Vec::new();
    if is_keyword(tokens.get(pos), "order") {
        if !is_keyword(tokens.get(pos + 1), "by") {
            return Err("expected BY after ORDER".into());
        }
        pos += 2;
        loop {
            let Some(Token::Word(name)) = tokens.get(pos) else {
                return Err(format!("expected a field to order by, found {:?}", tokens.get(pos)));
            };
            let field = resolve(name, schema)?;
            pos += 1;
            let descending = is_keyword(tokens.get(pos), "desc");
            if descending || is_keyword(tokens.get(pos), "asc") {
                pos += 1;
            }
            order.push((field, descending));
            if tokens.get(pos) != Some(&Token::Comma) {
                break;
            }
            pos += 1;
        }
    }
    let mut limit = None;
    if is_keyword(tokens.get(pos), "limit") {
        match tokens.get(pos + 1) {
            Some(Token::Num(n)) if *n >= 0.0 && n.fract() == 0.0 => limit = Some(*n as u64),
            other => return Err(format!("LIMIT takes a whole number of records, found {other:?}")),
        }
        pos += 2;
    }
    if pos != tokens.len() {
        return Err(format!("unexpected {:?} after the query", tokens[pos]));
    }
    Ok(Query { fields, filter, order, limit })
}

/// A selected column: a field of the object (bare or prefixed with the object's name), or `Relation.Field`.
fn column(name: &str, schema: &ObjectSchema, schemas: &[Arc<ObjectSchema>]) -> Result<Column, String> {
    let Some((relation, field)) = name.split_once('.').filter(|(r, _)| !r.eq_ignore_ascii_case(schema.name)) else {
        return resolve(name, schema).map(Column::Own);
    };
    let invalid = || format!("invalid field for {}: {name}", schema.name);
    let path = crate::schema::path(schemas, schema, relation).ok_or_else(invalid)?;
    let target = schemas.iter().find(|s| s.name == path.target);
    let (field, field_name) = if field.eq_ignore_ascii_case("Id") {
        (None, "Id")
    } else {
        // Of an object Zuora keeps only ids of here (a journal entry), nothing else can be read.
        let target = target.ok_or_else(invalid)?;
        let index = target.field(field).ok_or_else(invalid)?;
        (Some(index), target.fields[index].name)
    };
    Ok(Column::Joined(Join { path, field, field_name }))
}

/// A field of the object itself, bare or prefixed with the object's name (conditions and `ORDER BY`).
fn resolve(name: &str, schema: &ObjectSchema) -> Result<usize, String> {
    let bare = match name.split_once('.') {
        Some((object, field)) if object.eq_ignore_ascii_case(schema.name) => field,
        Some((object, _)) => {
            return Err(format!("{name}: the simulator takes joined fields ({object}) in SELECT only"));
        }
        None => name,
    };
    schema.field(bare).ok_or_else(|| format!("invalid field for {}: {name}", schema.name))
}

fn parse_or(tokens: &[Token], pos: &mut usize, schema: &ObjectSchema) -> Result<Condition, String> {
    let mut left = parse_and(tokens, pos, schema)?;
    while is_keyword(tokens.get(*pos), "or") {
        *pos += 1;
        left = Condition::Or(Box::new(left), Box::new(parse_and(tokens, pos, schema)?));
    }
    Ok(left)
}

fn parse_and(tokens: &[Token], pos: &mut usize, schema: &ObjectSchema) -> Result<Condition, String> {
    let mut left = parse_atom(tokens, pos, schema)?;
    while is_keyword(tokens.get(*pos), "and") {
        *pos += 1;
        left = Condition::And(Box::new(left), Box::new(parse_atom(tokens, pos, schema)?));
    }
    Ok(left)
}

fn parse_atom(tokens: &[Token], pos: &mut usize, schema: &ObjectSchema) -> Result<Condition, String> {
    if tokens.get(*pos) == Some(&Token::Open) {
        *pos += 1;
        let inner = parse_or(tokens, pos, schema)?;
        if tokens.get(*pos) != Some(&Token::Close) {
            return Err("expected )".into());
        }
        *pos += 1;
        return Ok(inner);
    }
    let Some(Token::Word(name)) = tokens.get(*pos) else {
        return Err(format!("expected a condition, found {:?}", tokens.get(*pos)));
    };
    let field = resolve(name, schema)?;
    if is_keyword(tokens.get(*pos + 1), "is") {
        let negated = is_keyword(tokens.get(*pos + 2), "not");
        let null_at = *pos + 2 + usize::from(negated);
        if !is_keyword(tokens.get(null_at), "null") {
            return Err(format!("expected NULL after {name} IS"));
        }
        *pos = null_at + 1;
        return Ok(Condition::Compare(field, if negated { Op::Ne } else { Op::Eq }, Literal::Null));
    }
    let Some(Token::Op(op)) = tokens.get(*pos + 1) else {
        return Err(format!("expected an operator after {name}"));
    };
    let literal = match tokens.get(*pos + 2) {
        Some(Token::Str(s)) => Literal::Text(s.clone()),
        Some(Token::Num(n)) => Literal::Number(*n),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
        other => return Err(format!("expected a value after {name}, found {other:?}")),
    };
    *pos += 3;
    let is_time = matches!(schema.fields[field].ty, FieldType::Created | FieldType::Updated | FieldType::DateTime);
    if is_time && matches!(&literal, Literal::Text(s) if s.len() >= 19 && s.as_bytes()[10] == b' ') {
        return Ok(Condition::Ignored);
    }
    // Typed once here, not once per row.
    let literal = match (schema.fields[field].ty, literal) {
        (_, Literal::Text(s)) if is_time => parse_instant(&s).map_or(Literal::Text(s), Literal::Instant),
        (FieldType::Date, Literal::Text(s)) => {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_or(Literal::Text(s), Literal::Date)
        }
        (_, literal) => literal,
    };
    Ok(Condition::Compare(field, *op, literal))
}

/// An ISO datetime literal: `2020-04-01T00:00:00` with an optional `Z`, `+00:00` or `+0000` (none: UTC).
fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    for format in ["%Y-%m-%dT%H:%M:%S%:z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S").ok().map(|n| n.and_utc()).or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
    })
}

impl Condition {
    /// Whether a row passes.
    pub fn matches(&self, snapshot: &Snapshot, row: &RowState) -> bool {
        match self {
            Self::And(a, b) => a.matches(snapshot, row) && b.matches(snapshot, row),
            Self::Or(a, b) => a.matches(snapshot, row) || b.matches(snapshot, row),
            Self::Ignored => true,
            Self::Compare(field, op, literal) => {
                let value = snapshot.value(*field, row);
                let ordering = match (&value, literal) {
                    (Value::Null, Literal::Null) => Some(std::cmp::Ordering::Equal),
                    (Value::Null, _) | (_, Literal::Null) => return *op == Op::Ne,
                    (Value::DateTime(v), Literal::Instant(t)) => Some(v.cmp(t)),
                    (Value::Date(v), Literal::Date(d)) => Some(v.cmp(d)),
                    (Value::Text(v), Literal::Text(s)) => Some(v.as_str().cmp(s.as_str())),
                    (Value::Number(v), Literal::Number(n)) => v.partial_cmp(n),
                    (Value::Bool(v), Literal::Bool(b)) => Some(v.cmp(b)),
                    _ => None,
                };
                let Some(ordering) = ordering else { return false };
                match op {
                    Op::Eq => ordering.is_eq(),
                    Op::Ne => ordering.is_ne(),
                    Op::Lt => ordering.is_lt(),
                    Op::Le => ordering.is_le(),
                    Op::Gt => ordering.is_gt(),
                    Op::Ge => ordering.is_ge(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::objects;

    fn all() -> Vec<Arc<ObjectSchema>> {
        objects().into_iter().map(Arc::new).collect()
    }

    fn account() -> ObjectSchema {
        objects().into_iter().find(|o| o.name == "Account").unwrap()
    }

    fn parse(text: &str, schema: &ObjectSchema) -> Result<Query, String> {
        super::parse(text, schema, &all())
    }

    #[test]
    fn parses_fields_with_or_without_the_object_prefix_in_any_case() {
        let q = parse("select id, Account.Name, BALANCE from account", &account()).unwrap();
        let schema = account();
        let own = |name| Column::Own(schema.field(name).unwrap());
        assert_eq!(q.fields, [own("Id"), own("Name"), own("Balance")]);
        assert!(q.filter.is_none());
        assert_eq!(from_object("select id from account"), Some("account".into()));
    }

    #[test]
    fn joined_fields_follow_a_relation_of_the_from_object_in_any_case() {
        let all = all();
        let charge = all.iter().find(|o| o.name == "RatePlanCharge").unwrap();
        let q = parse("SELECT ID, account.ID, Product.name, journalentry.Id FROM RatePlanCharge", charge);
        assert!(q.unwrap_err().contains("journalentry.Id"), "a charge has no journal entry");
        let q = parse("SELECT ID, account.ID, Product.name, BillToContact.Id FROM RatePlanCharge", charge).unwrap();
        let Column::Joined(account) = &q.fields[1] else { panic!("{:?}", q.fields[1]) };
        assert_eq!((account.path.relation, account.path.target, account.field), ("Account", "Account", None));
        let Column::Joined(product) = &q.fields[2] else { panic!("{:?}", q.fields[2]) };
        assert_eq!((product.path.relation, product.field_name), ("Product", "Name"));
        let Column::Joined(bill_to) = &q.fields[3] else { panic!("{:?}", q.fields[3]) };
        assert_eq!(bill_to.path.target, "Contact");
        let item = all.iter().find(|o| o.name == "InvoiceItem").unwrap();
        // Only ids of objects Zuora keeps no rows of here: a journal run's name is unknown.
        assert!(parse("SELECT Id, JournalRun.Id FROM InvoiceItem", item).is_ok());
        assert!(parse("SELECT Id, JournalRun.Name FROM InvoiceItem", item).unwrap_err().contains("JournalRun.Name"));
        assert!(parse("SELECT Id, Product.Nope FROM InvoiceItem", item).is_err());
        assert!(
            parse("SELECT Id FROM InvoiceItem WHERE Product.Name = 'x'", item).unwrap_err().contains("SELECT only")
        );
    }

    #[test]
    fn rejects_unknown_fields_a_star_among_fields_and_missing_select() {
        assert!(parse("SELECT Id, Nope FROM Account", &account()).unwrap_err().contains("invalid field"));
        assert!(parse("SELECT Id, * FROM Account", &account()).is_err());
        assert_eq!(parse("SELECT * FROM Account LIMIT 5", &account()).unwrap().limit, Some(5));
        assert!(parse("SELECT Id FROM Account LIMIT -1", &account()).is_err());
        assert_eq!(parse("Id FROM Account", &account()).unwrap_err(), "You must specify a select.");
        assert!(parse("SELECT Id FROM Account WHERE", &account()).is_err());
    }

    #[test]
    fn a_space_separated_datetime_literal_is_silently_ignored_like_zuora_does() {
        let q = parse("SELECT Id FROM Account WHERE CreatedDate >= '2026-08-01 00:00:00'", &account()).unwrap();
        assert!(matches!(q.filter, Some(Condition::Ignored)));
        let q = parse("SELECT Id FROM Account WHERE (CreatedDate >= '2020-04-01T00:00:00') AND (Status = 'Active' OR AutoPay = true)", &account()).unwrap();
        assert!(matches!(q.filter, Some(Condition::And(..))));
    }

    #[test]
    fn instants_parse_with_every_offset_form() {
        let expected = "2020-04-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        for text in
            ["2020-04-01T00:00:00", "2020-04-01T00:00:00Z", "2020-04-01T00:00:00+00:00", "2020-04-01T02:00:00+0200"]
        {
            assert_eq!(parse_instant(text), Some(expected), "{text}");
        }
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use crate::schema::objects;

    #[test]
    fn datetime_predicates_filter_generated_rows() {
        let all: Vec<Arc<ObjectSchema>> = objects().into_iter().map(Arc::new).collect();
        let schema = all.iter().find(|o| o.name == "InvoiceItem").unwrap().clone();
        let q = parse(
            "select Id from InvoiceItem where (CreatedDate >= '2020-04-01T00:00:00') AND (CreatedDate <= '2099-01-01T00:00:00')",
            &schema,
            &all,
        )
        .unwrap();
        let generator = crate::data::Generator {
            seed: 1,
            genesis: "2020-01-01T00:00:00Z".parse().unwrap(),
            history: chrono::Duration::days(1461),
            base_rows: std::sync::Arc::new([("InvoiceItem", 1000u64)].into_iter().collect()),
        };
        let snapshot = Snapshot::new(schema, 1000, Default::default(), generator);
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let filter = q.filter.unwrap();
        let passing = (0..1000).filter(|k| filter.matches(&snapshot, &snapshot.state_at(*k, now).unwrap())).count();
        assert!(passing > 900 && passing < 1000, "{passing}");
    }
}
