//! The clauses of a catalogue's ZOQL `SELECT`, read one way for every part that rewrites a query: the planner's
//! windows, the audit's `Id, UpdatedDate` query and the catalogue's check.
//!
//! Keywords are found outside quoted literals, in any case, after and before any whitespace (a query written over
//! several lines in TOML has newlines and tabs where a one-line query has spaces) or a parenthesis.

/// A `SELECT columns FROM object [WHERE filter]`, each part trimmed, borrowed from the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Select<'a> {
    /// What is selected, as written (`Id, Name`).
    pub columns: &'a str,
    /// The object queried.
    pub object: &'a str,
    /// The condition after `WHERE`, if there is one.
    pub filter: Option<&'a str>,
}

impl<'a> Select<'a> {
    /// The clauses of `zoql`, or `None` when it is not a `SELECT ... FROM object` with an object name.
    pub fn parse(zoql: &'a str) -> Option<Self> {
        let zoql = zoql.trim();
        if keyword_at(zoql, "select") != Some(0) {
            return None;
        }
        let from = keyword_at(zoql, "from")?;
        let columns = zoql["select".len()..from].trim();
        let rest = &zoql[from + "from".len()..];
        let (object, filter) = match keyword_at(rest, "where") {
            Some(at) => (rest[..at].trim(), Some(rest[at + "where".len()..].trim())),
            None => (rest.trim(), None),
        };
        let named = !object.is_empty() && object.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        (named && !columns.is_empty()).then_some(Self { columns, object, filter })
    }

    /// The same query with `columns` selected instead.
    pub fn with_columns(&self, columns: &str) -> String {
        Select { columns, object: self.object, filter: self.filter }.to_string()
    }

    /// The same query restricted further by `condition`: `WHERE (filter) AND condition`.
    pub fn and(&self, condition: &str) -> String {
        match self.filter {
            Some(filter) => format!("SELECT {} FROM {} WHERE ({filter}) AND {condition}", self.columns, self.object),
            None => format!("SELECT {} FROM {} WHERE {condition}", self.columns, self.object),
        }
    }
}

impl std::fmt::Display for Select<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SELECT {} FROM {}", self.columns, self.object)?;
        match self.filter {
            Some(filter) => write!(f, " WHERE {filter}"),
            None => Ok(()),
        }
    }
}

/// Byte offset of the first `keyword` (lower case) in `zoql` outside quotes, standing as a word of its own.
fn keyword_at(zoql: &str, keyword: &str) -> Option<usize> {
    let bytes = zoql.as_bytes();
    let apart = |b: u8| b.is_ascii_whitespace() || b == b'(' || b == b')';
    let mut in_quote = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\'' {
            in_quote = !in_quote;
            continue;
        }
        let word = bytes.get(i..i + keyword.len()).is_some_and(|w| w.eq_ignore_ascii_case(keyword.as_bytes()));
        if !in_quote
            && word
            && (i == 0 || apart(bytes[i - 1]))
            && bytes.get(i + keyword.len()).is_none_or(|&next| apart(next))
        {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_are_found_whatever_their_case_and_whitespace_and_never_inside_quotes() {
        let one_line = Select::parse("SELECT Id, Name FROM InvoiceItem WHERE CreatedDate >= '2020-04-01'").unwrap();
        let multi_line = "select\n  Id,\n  Name\nfrom\tInvoiceItem\nWhere\n  CreatedDate >= '2020-04-01'\n";
        let multi_line = Select::parse(multi_line).unwrap();
        assert_eq!((one_line.object, one_line.filter), (multi_line.object, multi_line.filter));
        assert_eq!(multi_line.columns, "Id,\n  Name");
        assert_eq!(
            multi_line.with_columns("Id, UpdatedDate"),
            "SELECT Id, UpdatedDate FROM InvoiceItem WHERE CreatedDate >= '2020-04-01'"
        );
        let quoted = Select::parse("SELECT Id FROM Account WHERE Name = ' from x where y' AND(Somewhere = 1)").unwrap();
        assert_eq!((quoted.object, quoted.filter), ("Account", Some("Name = ' from x where y' AND(Somewhere = 1)")));
        let bare = Select::parse("SELECT Somewhere, Fromage FROM Account").unwrap();
        assert_eq!((bare.columns, bare.object, bare.filter), ("Somewhere, Fromage", "Account", None));
        assert_eq!(bare.and("X = 1"), "SELECT Somewhere, Fromage FROM Account WHERE X = 1");
        assert_eq!(quoted.and("X = 1"), format!("SELECT Id FROM Account WHERE ({}) AND X = 1", quoted.filter.unwrap()));
        for not_a_select in
            ["", "SELECT Id", "SELECT FROM Account", "UPDATE Account", "SELECT Id FROM", "SELECTId FROM A"]
        {
            assert_eq!(Select::parse(not_a_select), None, "{not_a_select:?}");
        }
    }
}
