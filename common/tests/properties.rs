//! Properties over generated input (proptest): the record counter agrees with an RFC 4180 parser wherever the
//! chunks are cut, every message parser answers arbitrary JSON with a value or an error (never a panic), and
//! `incrementalTime` survives a round trip through both data centres' zones, daylight saving changes included.

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::csv_count::RecordCounter;
use common::messages::{CompletionMessage, ExportRequest, JobMessage};
use common::zuora::{DataCenter, parse_incremental_time, render_incremental_time};
use proptest::prelude::*;

/// A field: letters, and the bytes that make CSV hard (comma, quote, CR, LF), and non-ASCII.
fn field() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-c,\"\r\n é]{0,6}").expect("a valid regex")
}

/// An RFC 4180 file, as a CSV writer writes it: a header, then rows as wide as the header.
fn csv_file() -> impl Strategy<Value = (Vec<String>, Vec<Vec<String>>, bool)> {
    (1usize..5).prop_flat_map(|width| {
        (
            proptest::collection::vec(field(), width),
            proptest::collection::vec(proptest::collection::vec(field(), width), 0..12),
            any::<bool>(),
        )
    })
}

fn write_csv(header: &[String], rows: &[Vec<String>], crlf: bool) -> Vec<u8> {
    let terminator = if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
    let mut writer = csv::WriterBuilder::new().terminator(terminator).from_writer(Vec::new());
    writer.write_record(header).expect("writes to memory");
    for row in rows {
        writer.write_record(row).expect("writes to memory");
    }
    writer.into_inner().expect("flushes to memory")
}

fn count(chunks: &[&[u8]]) -> RecordCounter {
    let mut counter = RecordCounter::new();
    for chunk in chunks {
        counter.feed(chunk);
    }
    counter
}

proptest! {
    #[test]
    fn the_counter_agrees_with_an_rfc4180_parser_at_every_chunk_boundary((header, rows, crlf) in csv_file()) {
        let text = write_csv(&header, &rows, crlf);
        let parsed = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_slice()).records().count();
        prop_assert_eq!(parsed, rows.len());
        for cut in 0..=text.len() {
            let counter = count(&[&text[..cut], &text[cut..]]);
            prop_assert_eq!(counter.data_records(), rows.len() as u64, "cut at {}", cut);
            prop_assert!(counter.ends_with_terminator());
            prop_assert_eq!(counter.first_ragged(), None);
            prop_assert_eq!(counter.header_fields(), Some(header.len() as u64));
            prop_assert_eq!(&counter.header(), &header);
        }
    }

    #[test]
    fn a_file_cut_anywhere_inside_a_record_is_seen_cut((header, rows, crlf) in csv_file(), at in any::<prop::sample::Index>()) {
        let text = write_csv(&header, &rows, crlf);
        let cut = at.index(text.len());
        let counter = count(&[&text[..cut]]);
        // A cut right after a record's line feed leaves whole records (fewer: the record count catches it).
        let whole = cut == 0 || text[cut - 1] == b'\n' && counter.ends_with_terminator();
        if !whole {
            prop_assert!(!counter.ends_with_terminator(), "cut at {} of {:?}", cut, String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn message_parsers_answer_any_json_with_a_value_or_an_error(value in json(), text in ".{0,40}") {
        let body = value.to_string();
        for input in [body.as_str(), text.as_str()] {
            let _ = ExportRequest::parse(input, &["Account", "Invoice"], Utc::now());
            let _ = serde_json::from_str::<JobMessage>(input);
            let _ = CompletionMessage::from_metadata_json(input.as_bytes());
        }
    }

    #[test]
    fn requests_near_the_real_shape_parse_or_fail_with_a_reason(
        from in prop_oneof![Just("afterLastIncrement".to_owned()), Just("beginning".to_owned()), "20[0-9]{2}-[01][0-9]-[0-3][0-9]", ".{0,12}"],
        objects in proptest::option::of(proptest::collection::vec(prop_oneof![Just("Account"), Just("account"), Just("Nope")], 0..3)),
        full in any::<bool>(),
    ) {
        let mut body = serde_json::json!({"exportFromDate": from});
        if let Some(objects) = objects {
            body["objects"] = serde_json::json!(objects);
        }
        if full {
            body["fullExport"] = serde_json::json!(true);
        }
        match ExportRequest::parse(&body.to_string(), &["Account", "Invoice"], Utc::now()) {
            Ok(request) => prop_assert_eq!(serde_json::to_value(&request).is_ok(), true),
            Err(reason) => prop_assert!(!reason.0.is_empty()),
        }
    }

    #[test]
    fn incremental_time_round_trips_in_both_zones_across_daylight_saving(seconds in 946_684_800i64..2_208_988_800) {
        let at = Utc.timestamp_opt(seconds, 0).single().expect("in range");
        let eu = render_incremental_time(at, DataCenter::Eu);
        prop_assert_eq!(parse_incremental_time(&eu, DataCenter::Eu), Some(at));
        let us = render_incremental_time(at, DataCenter::Us);
        let back = parse_incremental_time(&us, DataCenter::Us).expect("a rendered time parses");
        // In the autumn hour that happens twice the earlier instant is read: a window starting an hour early
        // overlaps the one before, it never leaves a gap.
        prop_assert!(back == at || back == at - Duration::hours(1) && render_incremental_time(back, DataCenter::Us) == us,
            "{} rendered {} read back as {}", at, us, back);
        prop_assert!(back <= at);
    }
}

/// Arbitrary JSON, nested a few levels.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
        prop_oneof![
            ".{0,10}",
            Just("afterLastIncrement".to_owned()),
            Just("2022-05-04".to_owned()),
            Just("2c92c0f966cd4f580166ec0ac89d5bb7".to_owned())
        ]
        .prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("exportFromDate"),
        Just("objects"),
        Just("fullExport"),
        Just("requestId"),
        Just("window"),
        Just("from"),
        Just("to"),
        Just("version"),
        Just("jobId"),
        Just("kind"),
        Just("submittedAt"),
        Just("recordCount"),
        Just("x")
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(keys.clone().prop_map(str::to_owned), inner, 0..6)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

#[test]
fn the_autumn_hour_is_read_early_and_the_spring_gap_late() {
    let at = |text: &str| DateTime::parse_from_rfc3339(text).expect("valid").with_timezone(&Utc);
    // 2026-11-01 01:30 happens twice in Los Angeles: PDT (08:30Z) then PST (09:30Z).
    assert_eq!(parse_incremental_time("2026-11-01 01:30:00", DataCenter::Us), Some(at("2026-11-01T08:30:00Z")));
    // 2026-03-08 02:30 does not happen: the clocks jump from 02:00 PST to 03:00 PDT.
    assert_eq!(parse_incremental_time("2026-03-08 02:30:00", DataCenter::Us), Some(at("2026-03-08T10:30:00Z")));
}
