//! Full-export window planning over generated ranges (proptest): the windows are half-open, contiguous, aligned
//! on month starts and cover `[first month start, now)` exactly, whatever the window size.

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use common::config::FullExportConfig;
use producer::plan::windows;
use proptest::prelude::*;

proptest! {
    #[test]
    fn full_export_windows_cover_the_range_exactly_once(
        earliest_days in 0i64..9_000,
        span_secs in 1i64..600_000_000,
        window_months in 1u32..25,
    ) {
        let earliest = NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid") + chrono::Duration::days(earliest_days);
        let start = earliest.with_day(1).expect("day 1").and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let now = Utc.timestamp_opt(start.timestamp() + span_secs, 0).single().expect("in range");
        let planned = windows(&FullExportConfig { earliest, window_months, window_rows: 2_000_000 }, now);
        prop_assert!(!planned.is_empty());
        prop_assert_eq!(planned[0].0, start);
        prop_assert_eq!(planned[planned.len() - 1].1, now);
        for (from, to) in &planned {
            prop_assert!(from < to, "[{}, {}) is empty", from, to);
            prop_assert_eq!(from.day(), 1);
            prop_assert_eq!(from.time(), chrono::NaiveTime::MIN);
        }
        for pair in planned.windows(2) {
            prop_assert_eq!(pair[0].1, pair[1].0, "contiguous");
            let months = (pair[1].0.year() - pair[0].0.year()) * 12 + pair[1].0.month() as i32 - pair[0].0.month() as i32;
            prop_assert_eq!(months, window_months as i32);
        }
    }
}
