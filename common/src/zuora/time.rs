//! `incrementalTime`: the one timestamp Zuora reads in the tenant's zone rather than UTC.

use super::DataCenter;
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The wire format of `incrementalTime`.
const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Renders an instant as Zuora reads `incrementalTime` in that data centre: US Pacific (DST-aware) in the US, UTC in
/// the EU. `2022-10-01T00:00:00Z` is `2022-09-30 17:00:00` for a US tenant.
pub fn render_incremental_time(at: DateTime<Utc>, data_center: DataCenter) -> String {
    at.with_timezone(&data_center.zone()).format(FORMAT).to_string()
}

/// Reads a `yyyy-MM-dd HH:mm:ss` wall-clock time the way that data centre does. In the autumn hour that happens
/// twice the earlier instant is taken (a window that starts early overlaps, it never gaps); in the spring hour
/// that does not exist the wall clock is read one hour later, as the clocks do.
pub fn parse_incremental_time(text: &str, data_center: DataCenter) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), FORMAT).ok()?;
    local_to_utc(naive, data_center)
}

/// A wall-clock time of the data centre's zone as an instant.
pub(crate) fn local_to_utc(naive: NaiveDateTime, data_center: DataCenter) -> Option<DateTime<Utc>> {
    wall_clock_to_utc(naive, data_center.zone())
}

/// A wall-clock time of `zone` as an instant: in the autumn hour that happens twice the earlier instant, in the
/// spring hour that does not exist the wall clock one hour later, as the clocks do.
pub fn wall_clock_to_utc(naive: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => {
            zone.from_local_datetime(&(naive + chrono::Duration::hours(1))).earliest().map(|t| t.with_timezone(&Utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn us_tenants_get_pacific_time_with_daylight_saving() {
        // PDT (UTC-7) in October, the tap-zuora test case.
        assert_eq!(render_incremental_time(utc("2022-10-01T00:00:00Z"), DataCenter::Us), "2022-09-30 17:00:00");
        // PST (UTC-8) in January: the knowledge-center example 2015-01-21 10:30:01 is 1421865001000 ms.
        assert_eq!(render_incremental_time(utc("2015-01-21T18:30:01Z"), DataCenter::Us), "2015-01-21 10:30:01");
        assert_eq!(utc("2015-01-21T18:30:01Z").timestamp_millis(), 1_421_865_001_000);
    }

    #[test]
    fn eu_tenants_get_utc() {
        assert_eq!(render_incremental_time(utc("2022-10-01T00:00:00Z"), DataCenter::Eu), "2022-10-01 00:00:00");
    }

    #[test]
    fn parsing_inverts_rendering_across_dst_changes() {
        for instant in ["2022-03-13T09:59:59Z", "2022-03-13T10:00:00Z", "2022-11-06T08:30:00Z", "2022-11-06T09:30:00Z"]
        {
            let at = utc(instant);
            let text = render_incremental_time(at, DataCenter::Us);
            let back = parse_incremental_time(&text, DataCenter::Us).unwrap();
            // The repeated autumn hour reads back as its earlier instant.
            assert!(back <= at && at - back <= chrono::Duration::hours(1), "{instant} -> {text} -> {back}");
        }
        // 02:30 on the spring-forward day does not exist in Los Angeles: read as 03:30 PDT.
        assert_eq!(parse_incremental_time("2022-03-13 02:30:00", DataCenter::Us), Some(utc("2022-03-13T10:30:00Z")));
        assert_eq!(parse_incremental_time("not a time", DataCenter::Us), None);
    }
}
