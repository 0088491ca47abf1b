//! A submission's body, read whole before anything is scheduled: tolerant where Zuora is (numbers or strings,
//! flags as `"true"`), refusing what it refuses (an unknown format).

use super::*;

/// `POST /v1/batch-query/`'s body.
pub(super) struct SubmitRequest {
    /// `1.0` when absent or `1`; echoed as sent otherwise.
    pub version: String,
    pub partner: Option<String>,
    pub project: Option<String>,
    /// `CSV` or `GZIP` (upper case, as Zuora echoes it).
    pub format: String,
    /// The queries as sent (kept whole: a stateful job without queries reuses the session's).
    pub queries: Vec<Value>,
    /// `incrementalTime`, a wall-clock string or epoch milliseconds, read against the data centre later.
    pub incremental_time: Option<Value>,
    /// Seconds the window's upper bound is pulled back (0 to 3,600).
    pub offset: i64,
    /// `useQueryLabels` (API names in headers when true).
    pub api_names: bool,
    pub name: Option<String>,
    pub encrypted: String,
    pub notify_url: Option<String>,
}

/// One query of a submission.
pub(super) struct QueryRequest {
    pub name: Option<String>,
    pub text: String,
    pub batch_type: String,
    pub api_version: String,
    /// The `deleted` object as sent (the session compares it whole between runs).
    pub deleted: Option<Value>,
    /// `deleted.forceExport`: deleted rows in a stateless job.
    pub force_export: bool,
}

/// A string field, or a number written as one.
fn text(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A boolean field, or its string.
fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

impl SubmitRequest {
    /// Reads a body; an unknown format is refused as Zuora refuses it.
    pub fn parse(body: &Value) -> Result<Self, ApiError> {
        let version = match text(body.get("version")).as_deref() {
            None | Some("1" | "1.0") => "1.0".to_owned(),
            Some(v) => v.to_owned(),
        };
        let format = text(body.get("format")).unwrap_or_else(|| "csv".to_owned()).to_ascii_uppercase();
        match format.as_str() {
            "CSV" | "GZIP" => {}
            // Documented but not simulated: the names of the files inside Zuora's zip are undocumented.
            "ZIP" => return Err(api_error("90005", "format ZIP is not supported by the simulator (use csv or gzip)")),
            // Outside the documented enum: Zuora answers such bodies as malformed (docs/zuora-aqua.md, calls).
            _ => return Err(api_error(MALFORMED, "Oops, request is malformed. Please check your request.")),
        }
        Ok(Self {
            version,
            partner: text(body.get("partner")).filter(|s| !s.is_empty()),
            project: text(body.get("project")).filter(|s| !s.is_empty()),
            format,
            queries: body.get("queries").and_then(Value::as_array).cloned().unwrap_or_default(),
            incremental_time: body.get("incrementalTime").cloned(),
            offset: body.get("offset").and_then(Value::as_i64).unwrap_or(0).clamp(0, 3600),
            api_names: flag(body.get("useQueryLabels")),
            name: text(body.get("name")).map(|n| n.chars().take(32).collect()),
            encrypted: text(body.get("encrypted")).unwrap_or_else(|| "none".to_owned()),
            notify_url: text(body.get("notifyUrl")),
        })
    }

    /// Stateful: version 1.1 or later, partner and project both given.
    pub fn stateful(&self) -> bool {
        self.version != "1.0" && self.partner.is_some() && self.project.is_some()
    }

    /// The stateful session's key.
    pub fn session_key(&self) -> (String, String) {
        (self.partner.clone().unwrap_or_default(), self.project.clone().unwrap_or_default())
    }
}

impl QueryRequest {
    /// Reads one query object.
    pub fn parse(query: &Value) -> Self {
        let deleted = query.get("deleted").filter(|d| d.is_object()).cloned();
        Self {
            name: text(query.get("name")),
            text: query.get("query").and_then(Value::as_str).unwrap_or_default().to_owned(),
            batch_type: text(query.get("type")).unwrap_or_else(|| "zoqlexport".to_owned()),
            api_version: text(query.get("apiVersion")).unwrap_or_else(|| "91.0".to_owned()),
            force_export: deleted.as_ref().is_some_and(|d| flag(d.get("forceExport"))),
            deleted,
        }
    }
}
