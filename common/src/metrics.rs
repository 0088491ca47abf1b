//! Metrics as CloudWatch embedded metric format (EMF): one JSON line per event on stdout, which the container's
//! log driver sends to CloudWatch Logs, where CloudWatch extracts the metrics (no API call, no agent). The line is
//! also a readable record of the event.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "ZuoraLakeExport";

/// One measured value: its name, CloudWatch unit and value.
pub type Measure = (&'static str, &'static str, f64);

/// The EMF line of an event at `at`: its dimensions (name, value) and measures.
pub fn emf_line(at: DateTime<Utc>, dimensions: &[(&str, &str)], measures: &[Measure]) -> String {
    let definitions: Vec<Value> = measures.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [names], "Metrics": definitions}],
        }),
    );
    for (name, value) in dimensions {
        line.insert((*name).into(), json!(value));
    }
    for (name, _, value) in measures {
        line.insert((*name).into(), json!(value));
    }
    Value::Object(line).to_string()
}

/// What publishing one file measured.
#[derive(Debug, Clone)]
pub struct PublishedFile<'a> {
    /// The object.
    pub object: &'a str,
    /// Records in the file.
    pub records: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// The file's transfer, from its first byte read to its upload completed.
    pub relay_seconds: f64,
    /// From the job's submission at Zuora until the consumer found it completed.
    pub zuora_wait_seconds: f64,
    /// How old the object's data in the lake is now: now minus the end of the file's window.
    pub lag_seconds: f64,
}

impl PublishedFile<'_> {
    /// The file's EMF line, dimension `Object`.
    pub fn emf_line(&self, at: DateTime<Utc>) -> String {
        emf_line(
            at,
            &[("Object", self.object)],
            &[
                ("Files", "Count", 1.0),
                ("Records", "Count", self.records as f64),
                ("Bytes", "Bytes", self.bytes as f64),
                ("RelaySeconds", "Seconds", self.relay_seconds),
                ("ZuoraWaitSeconds", "Seconds", self.zuora_wait_seconds),
                ("LagSeconds", "Seconds", self.lag_seconds),
            ],
        )
    }

    /// Writes the line to stdout.
    pub fn emit(&self, at: DateTime<Utc>) {
        println!("{}", self.emf_line(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_files_line_is_embedded_metric_format_with_its_values_at_the_top() {
        let at: DateTime<Utc> = "2026-11-29T06:00:00Z".parse().unwrap();
        let file = PublishedFile {
            object: "Account",
            records: 8,
            bytes: 208,
            relay_seconds: 0.5,
            zuora_wait_seconds: 61.0,
            lag_seconds: 3600.0,
        };
        let line: Value = serde_json::from_str(&file.emf_line(at)).unwrap();
        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], 1_795_932_000_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(
            (directive["Namespace"].as_str(), &directive["Dimensions"]),
            (Some(NAMESPACE), &json!([["Object"]]))
        );
        // Every metric named in the directive is a number at the top level (EMF's rule), with its unit.
        let metrics = directive["Metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 6);
        for metric in metrics {
            assert!(line[metric["Name"].as_str().unwrap()].is_number(), "{metric}");
        }
        assert_eq!((line["Object"].as_str(), line["Records"].as_f64()), (Some("Account"), Some(8.0)));
        assert_eq!(metrics.iter().find(|m| m["Name"] == "Bytes").unwrap()["Unit"], "Bytes");
    }
}
