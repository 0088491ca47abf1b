//! What Zuora says of an object's fields (`GET /v1/describe/{object}`), and the columns of an export file typed
//! from it.
//!
//! Describe answers XML: an `<object>` with `<fields>`, each `<field>` holding `<name>`, `<label>`, `<type>`
//! (`boolean`, `date`, `datetime`, `decimal`, `integer`, `picklist`, `text`, `timestamp` or `ZOQL`; written with a
//! capital in some answers), `<required>` and `<contexts>` (a field without the `export` context cannot be
//! exported). Zuora's API reference, "Describe an object", and Export ZOQL's "Changes to the Describe API".

use crate::messages::FileColumn;
use quick_xml::Reader;
use quick_xml::events::Event;
use std::collections::HashMap;

/// One field of a described object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedField {
    /// API name (`AccountNumber`).
    pub name: String,
    /// Zuora's type, lower case (`text`, `decimal`, `datetime`, ...).
    pub zuora_type: String,
    /// `<required>true</required>`: never empty in Zuora.
    pub required: bool,
    /// Listed in the `export` context: usable in an export query.
    pub exportable: bool,
}

/// An object's fields, by API name (case-insensitive, as ZOQL reads them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    fields: HashMap<String, DescribedField>,
}

impl Described {
    /// Reads Describe's XML answer.
    pub fn parse(xml: &str) -> Result<Self, String> {
        let mut reader = Reader::from_str(xml);
        reader.config_mut().trim_text(true);
        let mut path: Vec<String> = Vec::new();
        let mut field: Option<FieldParts> = None;
        let mut fields = HashMap::new();
        loop {
            match reader.read_event().map_err(|e| format!("describe: not XML at {}: {e}", reader.error_position()))? {
                Event::Start(start) => {
                    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                    if name == "field" && path.last().map(String::as_str) == Some("fields") {
                        field = Some(FieldParts::default());
                    }
                    path.push(name);
                }
                Event::End(_) => {
                    if path.pop().as_deref() == Some("field")
                        && path.last().map(String::as_str) == Some("fields")
                        && let Some(done) = field.take().and_then(FieldParts::finish)
                    {
                        fields.insert(done.name.to_ascii_lowercase(), done);
                    }
                }
                Event::Text(text) => {
                    if let Some(parts) = field.as_mut() {
                        let value = text.decode().map_err(|e| format!("describe: {e}"))?;
                        let value = quick_xml::escape::unescape(&value).map_err(|e| format!("describe: {e}"))?;
                        parts.take(&path, value.trim());
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if fields.is_empty() {
            return Err("describe: the answer lists no <fields><field>".to_owned());
        }
        Ok(Self { fields })
    }

    /// A field by API name, case-insensitive.
    pub fn field(&self, name: &str) -> Option<&DescribedField> {
        self.fields.get(&name.to_ascii_lowercase())
    }
}

/// A `<field>` being read.
#[derive(Default)]
struct FieldParts {
    name: Option<String>,
    zuora_type: Option<String>,
    required: bool,
    exportable: bool,
}

impl FieldParts {
    /// Keeps the text of an element directly inside `<field>` (or a `<context>` of its `<contexts>`).
    fn take(&mut self, path: &[String], value: &str) {
        let inside_field = path.iter().rposition(|p| p == "field").map(|at| &path[at + 1..]);
        match inside_field {
            Some([leaf]) if leaf == "name" => self.name = Some(value.to_owned()),
            Some([leaf]) if leaf == "type" => self.zuora_type = Some(value.to_ascii_lowercase()),
            Some([leaf]) if leaf == "required" => self.required = value.eq_ignore_ascii_case("true"),
            Some([contexts, context]) if contexts == "contexts" && context == "context" => {
                self.exportable |= value.eq_ignore_ascii_case("export");
            }
            _ => {}
        }
    }

    fn finish(self) -> Option<DescribedField> {
        Some(DescribedField {
            name: self.name?,
            zuora_type: self.zuora_type.unwrap_or_else(|| UNKNOWN_TYPE.to_owned()),
            required: self.required,
            exportable: self.exportable,
        })
    }
}

/// The type given to a column Describe does not know (a relation that is not an object of its own, a field
/// Describe leaves out): its values are kept as text.
pub const UNKNOWN_TYPE: &str = "text";

/// The columns of an export file of `object`, typed from the Describe answers of the objects its header names
/// (`described`, by object name; an object without an answer types its columns [`UNKNOWN_TYPE`]).
///
/// A header names columns `Object.Field` (API names, `useQueryLabels: true`). The object's own fields keep
/// Describe's `required` (the deleted flag and the object's `Id` are never empty); a joined field (`Account.Name` in
/// an `Invoice` export) can be empty whatever Describe says, since the joined row may not exist; an `Id` of any
/// relation is `text` (Zuora's ids are 32-character text) without asking.
pub fn typed_columns(
    object: &str,
    header: &[String],
    deleted_column: Option<&str>,
    described: &HashMap<String, Described>,
) -> Vec<FileColumn> {
    header
        .iter()
        .map(|name| {
            let (relation, field) = name.split_once('.').unwrap_or((object, name.as_str()));
            let own = relation.eq_ignore_ascii_case(object);
            let is_deleted = is_deleted_flag(object, deleted_column, relation, field);
            let found = described.get(&relation.to_ascii_lowercase()).and_then(|d| d.field(field));
            let zuora_type = if is_deleted {
                "boolean".to_owned()
            } else if field.eq_ignore_ascii_case("id") {
                "text".to_owned()
            } else {
                found.map_or_else(|| UNKNOWN_TYPE.to_owned(), |f| f.zuora_type.clone())
            };
            let never_empty =
                own && (is_deleted || field.eq_ignore_ascii_case("id") || found.is_some_and(|f| f.required));
            FileColumn { name: name.clone(), zuora_type, nullable: !never_empty }
        })
        .collect()
}

/// Whether the column `relation.field` of an export of `object` is the object's deleted flag (`deleted_column`):
/// a column Zuora adds to the file, which Describe never lists.
pub fn is_deleted_flag(object: &str, deleted_column: Option<&str>, relation: &str, field: &str) -> bool {
    relation.eq_ignore_ascii_case(object) && deleted_column.is_some_and(|d| d.eq_ignore_ascii_case(field))
}

/// The relations (the part before the dot) a header names, lower case, each once: the objects to describe.
pub fn relations_named(object: &str, header: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in header {
        let relation = name.split_once('.').map_or(object, |(r, _)| r).to_ascii_lowercase();
        if !out.contains(&relation) {
            out.push(relation);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<object>
  <name>Account</name>
  <label>Account</label>
  <fields>
    <field><name>Id</name><label>Account ID</label><type>text</type><required>false</required>
      <contexts><context>soap</context><context>export</context></contexts></field>
    <field><name>Balance</name><label>Account Balance</label><type>Decimal</type><required>false</required>
      <contexts><context>export</context></contexts></field>
    <field><name>Name</name><label>Account Name &amp; Co</label><type>text</type><required>true</required>
      <contexts><context>export</context></contexts></field>
    <field><name>Status</name><label>Status</label><type>picklist</type>
      <options><option>Active</option><option>Draft</option></options>
      <contexts><context>export</context></contexts></field>
    <field><name>RolloverBalance</name><type>decimal</type><contexts><context>soap</context></contexts></field>
    <field><name>UpdatedDate</name><type>datetime</type><required>true</required>
      <contexts><context>export</context></contexts></field>
  </fields>
  <related-objects><object href="https://rest.zuora.com/v1/describe/Contact"><name>BillToContact</name></object></related-objects>
</object>"#;

    #[test]
    fn describe_reads_each_fields_type_requirement_and_export_context() {
        let account = Described::parse(ACCOUNT).unwrap();
        let balance = account.field("balance").unwrap();
        assert_eq!((balance.zuora_type.as_str(), balance.required, balance.exportable), ("decimal", false, true));
        assert!(account.field("Name").unwrap().required);
        assert_eq!(account.field("Status").unwrap().zuora_type, "picklist");
        assert!(!account.field("RolloverBalance").unwrap().exportable);
        // A related object's <name> is not a field.
        assert!(account.field("BillToContact").is_none());
        assert!(Described::parse("<object><name>X</name></object>").unwrap_err().contains("no <fields>"));
        assert!(Described::parse("<object><fields><field><name>Id</name>").is_err(), "a cut answer is refused");
    }

    #[test]
    fn a_files_columns_are_typed_by_the_objects_its_header_names() {
        let described = HashMap::from([("account".to_owned(), Described::parse(ACCOUNT).unwrap())]);
        let header: Vec<String> =
            ["Invoice.Id", "Invoice.Amount", "Account.Balance", "Account.Name", "Account.Id", "Invoice.IsDeleted"]
                .map(str::to_owned)
                .to_vec();
        let columns = typed_columns("Invoice", &header, Some("IsDeleted"), &described);
        let shape: Vec<(&str, &str, bool)> =
            columns.iter().map(|c| (c.name.as_str(), c.zuora_type.as_str(), c.nullable)).collect();
        assert_eq!(
            shape,
            [
                ("Invoice.Id", "text", false),
                // Invoice was not described: its fields are text.
                ("Invoice.Amount", "text", true),
                ("Account.Balance", "decimal", true),
                // Required on Account, but a joined value can be missing.
                ("Account.Name", "text", true),
                ("Account.Id", "text", true),
                ("Invoice.IsDeleted", "boolean", false),
            ]
        );
        let own = typed_columns("Account", &header[2..4], None, &described);
        assert!(!own[1].nullable, "an object's own required field is never empty");
        assert_eq!(relations_named("Invoice", &header), ["invoice", "account"]);
    }
}
