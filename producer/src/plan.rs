//! Turning a request into the jobs it needs. Pure: no I/O, so every rule is unit-tested here.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, Utc};
use common::catalogue::ObjectSpec;
use common::config::FullExportConfig;
use common::ledger::PlannedJob;
use common::messages::{ExportFrom, ExportRequest, JobKind};
use common::zoql::Select;
use common::zuora::DataCenter;

/// The instant a backfill date stands for: 00:00:00 UTC of that day. The old Lambda sent the date's midnight
/// unconverted, which a US tenant reads as Pacific midnight, 7 or 8 hours later, missing the first hours of the
/// day; UTC midnight starts earlier, so a backfill never misses what the old one caught.
pub fn backfill_start(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

/// What a backfill of `date` exports, said so that an operator following the old runbook cannot miss the
/// difference: the exact instant, and the instant the old export started at for the same date.
pub fn backfill_explained(date: NaiveDate, data_center: DataCenter) -> String {
    let ours = backfill_start(date);
    let old = common::zuora::parse_incremental_time(&format!("{date} 00:00:00"), data_center).unwrap_or(ours);
    let instant = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ");
    if old == ours {
        format!("changes since {} (00:00 UTC of {date}, as the old export read it)", instant(ours))
    } else {
        format!(
            "changes since {} (00:00 UTC of {date}); the old export read {date} as US Pacific midnight, {}, {} h later",
            instant(ours),
            instant(old),
            (old - ours).num_hours()
        )
    }
}

/// The jobs a valid request needs, in submission order: one for an increment or a backfill; for a full export one
/// per object, its first `CreatedDate` window from `full.earliest` (`window_months` long), the export going on to
/// `now` window by window as each is published (sized by its data: `FullExportConfig::next_window`), or the
/// request's one exact window (going on to its `until`, if any); for a lookback one window per object that has
/// `lookback_days`, its last days to `now` (none: nothing to do).
pub fn plan(
    request: &ExportRequest,
    request_key: &str,
    objects: &[&ObjectSpec],
    full: &FullExportConfig,
    now: DateTime<Utc>,
) -> Vec<PlannedJob> {
    let names = || objects.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
    let job = |index: usize, kind, objects, from, to| PlannedJob {
        idempotency_key: format!("zle:{request_key}:{index}"),
        kind,
        objects,
        from,
        to,
        job_id: None,
        window: None,
        enqueued: false,
        until: None,
    };
    match request.export_from_date {
        ExportFrom::AfterLastIncrement => vec![job(0, JobKind::Increment, names(), None, None)],
        ExportFrom::Date(date) => vec![job(0, JobKind::Backfill, names(), Some(backfill_start(date)), None)],
        ExportFrom::Instant(at) => vec![job(0, JobKind::Backfill, names(), Some(at), None)],
        ExportFrom::Lookback => objects
            .iter()
            .filter_map(|o| Some((o.name.clone(), o.lookback_days?)))
            .enumerate()
            .map(|(i, (name, days))| {
                let from = now - chrono::Duration::days(i64::from(days));
                job(i, JobKind::FullWindow, vec![name], Some(from), Some(now))
            })
            .collect(),
        ExportFrom::Beginning => {
            let (from, to, until) = match request.window {
                Some(exact) => (exact.from, exact.to, exact.until),
                None => match windows(full, now).first() {
                    Some(&(from, to)) => (from, to, Some(now)),
                    None => return Vec::new(),
                },
            };
            objects
                .iter()
                .enumerate()
                .map(|(i, o)| PlannedJob {
                    until: until.filter(|until| *until > to),
                    ..job(i, JobKind::FullWindow, vec![o.name.clone()], Some(from), Some(to))
                })
                .collect()
        }
    }
}

/// Half-open windows `[from, to)` of `window_months` calendar months, aligned on month starts, from the month of
/// `earliest` to `now`; the last one ends at `now`. Consecutive windows share their bound, so a row created at a
/// boundary falls in exactly one window.
pub fn windows(full: &FullExportConfig, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut start = full.earliest.with_day(1).unwrap_or(full.earliest).and_time(NaiveTime::MIN).and_utc();
    let step = Months::new(full.window_months.max(1));
    let mut windows = Vec::new();
    while start < now {
        let end = start.checked_add_months(step).map_or(now, |end| end.min(now));
        windows.push((start, end));
        start = end;
    }
    windows
}

/// `zoql` restricted to rows created in `[from, to)`. The bounds are ISO datetimes with an offset: Zuora silently
/// ignores a predicate on a space-separated literal and would return the whole table. A query the catalogue let
/// through is always a [`Select`]; anything else is returned as it is.
pub fn windowed_query(zoql: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let literal = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    let window = format!("CreatedDate >= '{}' AND CreatedDate < '{}'", literal(from), literal(to));
    Select::parse(zoql).map_or_else(|| zoql.to_owned(), |select| select.and(&window))
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::catalogue::Catalogue;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// Full exports from `earliest` (year, month, day), first windows of `months`, 2 M rows a window.
    fn full_export((year, month, day): (i32, u32, u32), months: u32) -> FullExportConfig {
        let earliest = NaiveDate::from_ymd_opt(year, month, day).unwrap();
        FullExportConfig { earliest, window_months: months, window_rows: 2_000_000 }
    }

    fn request(body: &str) -> ExportRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn a_backfill_date_means_utc_midnight_and_renders_in_pacific_time_for_us_tenants() {
        let start = backfill_start(NaiveDate::from_ymd_opt(2022, 5, 4).unwrap());
        assert_eq!(start, at("2022-05-04T00:00:00Z"));
        let rendered = common::zuora::render_incremental_time(start, common::zuora::DataCenter::Us);
        assert_eq!(rendered, "2022-05-03 17:00:00");
    }

    #[test]
    fn windows_are_half_open_contiguous_and_end_now() {
        let full = full_export((2026, 1, 15), 2);
        let now = at("2026-06-10T12:00:00Z");
        let w = windows(&full, now);
        assert_eq!(
            w,
            [
                (at("2026-01-01T00:00:00Z"), at("2026-03-01T00:00:00Z")),
                (at("2026-03-01T00:00:00Z"), at("2026-05-01T00:00:00Z")),
                (at("2026-05-01T00:00:00Z"), now),
            ]
        );
        for pair in w.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "no gap, no overlap");
        }
    }

    #[test]
    fn window_predicates_are_added_to_queries_with_or_without_a_where_clause() {
        let (from, to) = (at("2022-01-01T00:00:00Z"), at("2022-02-01T00:00:00Z"));
        assert_eq!(
            windowed_query("SELECT Id FROM Account", from, to),
            "SELECT Id FROM Account WHERE CreatedDate >= '2022-01-01T00:00:00+00:00' AND CreatedDate < '2022-02-01T00:00:00+00:00'"
        );
        let item = "SELECT Id FROM InvoiceItem WHERE (CreatedDate >= '2020-04-01T00:00:00') AND (Name = 'where')";
        assert_eq!(
            windowed_query(item, from, to),
            "SELECT Id FROM InvoiceItem WHERE ((CreatedDate >= '2020-04-01T00:00:00') AND (Name = 'where')) AND \
             CreatedDate >= '2022-01-01T00:00:00+00:00' AND CreatedDate < '2022-02-01T00:00:00+00:00'"
        );
    }

    #[test]
    fn requests_plan_one_job_or_one_per_object_and_window() {
        let catalogue = Catalogue::builtin();
        let objects = catalogue.select(&["Account".into(), "Invoice".into()]).unwrap();
        let full = full_export((2026, 9, 1), 1);
        let now = at("2026-11-24T10:00:00Z");

        let daily = plan(&request(r#"{"exportFromDate":"afterLastIncrement"}"#), "m1", &objects, &full, now);
        assert_eq!(daily.len(), 1);
        assert_eq!(
            (daily[0].kind, daily[0].from, daily[0].idempotency_key.as_str()),
            (JobKind::Increment, None, "zle:m1:0")
        );
        assert_eq!(daily[0].objects, ["Account", "Invoice"]);

        let backfill = plan(&request(r#"{"exportFromDate":"2026-11-01"}"#), "m2", &objects, &full, now);
        assert_eq!((backfill[0].kind, backfill[0].from), (JobKind::Backfill, Some(at("2026-11-01T00:00:00Z"))));

        let body = r#"{"exportFromDate":"beginning","fullExport":true}"#;
        let windows = plan(&request(body), "m3", &objects, &full, now);
        assert_eq!(windows.len(), 2, "each object's first window: the rest follows as each is published");
        assert!(windows.iter().all(|j| j.kind == JobKind::FullWindow && j.objects.len() == 1));
        for window in &windows {
            let first = (Some(at("2026-09-01T00:00:00Z")), Some(at("2026-10-01T00:00:00Z")), Some(now));
            assert_eq!((window.from, window.to, window.until), first, "one month from earliest, going on to now");
        }
        let keys: std::collections::HashSet<_> = windows.iter().map(|j| &j.idempotency_key).collect();
        assert_eq!(keys.len(), 2, "every window job has its own idempotency key");

        let exact = r#"{"exportFromDate":"beginning","fullExport":true,"objects":["Invoice"],
                        "window":{"from":"2022-01-01T00:00:00Z","to":"2022-07-01T00:00:00Z"}}"#;
        let invoice = catalogue.select(&["Invoice".into()]).unwrap();
        let again = plan(&request(exact), "m4", &invoice, &full, now);
        assert_eq!(again.len(), 1, "one exact window, not a full export from the beginning");
        assert_eq!(
            (again[0].kind, again[0].from, again[0].to, again[0].until),
            (JobKind::FullWindow, Some(at("2022-01-01T00:00:00Z")), Some(at("2022-07-01T00:00:00Z")), None)
        );
        let going_on = exact
            .replace(r#""to":"2022-07-01T00:00:00Z""#, r#""to":"2022-07-01T00:00:00Z","until":"2026-11-01T00:00:00Z""#);
        let next = plan(&request(&going_on), "m5", &invoice, &full, now);
        assert_eq!(next[0].until, Some(at("2026-11-01T00:00:00Z")), "an exact window of an export that goes on");
    }

    #[test]
    fn windows_grow_while_they_come_back_small_and_shrink_toward_window_months_when_large() {
        let full = FullExportConfig { window_rows: 1_000_000, ..full_export((2020, 1, 1), 1) };
        let (from, to, until) = (at("2020-01-01T00:00:00Z"), at("2020-02-01T00:00:00Z"), at("2026-11-24T10:00:00Z"));
        let days = |(a, b): (DateTime<Utc>, DateTime<Utc>)| (b - a).num_days();
        // Small: eight times as long; empty: the same.
        assert_eq!(days(full.next_window(from, to, 200, until).unwrap()), 31 * 8);
        assert_eq!(days(full.next_window(from, to, 0, until).unwrap()), 31 * 8);
        // Half the target: twice as long. Four times the target: a quarter, but never under 28 days.
        assert_eq!(days(full.next_window(from, to, 500_000, until).unwrap()), 62);
        let long = (at("2020-01-01T00:00:00Z"), at("2021-01-01T00:00:00Z"));
        assert_eq!(days(full.next_window(long.0, long.1, 4_000_000, until).unwrap()), 91);
        assert_eq!(days(full.next_window(from, to, 40_000_000, until).unwrap()), 28);
        // The last window ends at the export's end; there is none after it.
        let last = full.next_window(at("2026-10-01T00:00:00Z"), at("2026-11-01T00:00:00Z"), 10, until).unwrap();
        assert_eq!(last, (at("2026-11-01T00:00:00Z"), until));
        assert_eq!(full.next_window(at("2026-11-01T00:00:00Z"), until, 10, until), None);
    }

    #[test]
    fn a_lookback_plans_one_window_of_its_last_days_per_object_that_has_lookback_days() {
        let text = "[defaults]\nbucket = \"b\"\nkey = \"{object}/{job_id}/{batch_id}-{segment}.csv\"\n\
                    deleted_column = \"IsDeleted\"\n\
                    [[object]]\nname = \"Account\"\nquery = \"SELECT Id FROM Account\"\n\
                    [[object]]\nname = \"RatePlanCharge\"\nquery = \"SELECT Id FROM RatePlanCharge\"\nlookback_days = 35\n";
        let catalogue = Catalogue::parse(text, "t").unwrap();
        let objects: Vec<&ObjectSpec> = catalogue.objects.iter().collect();
        let full = full_export((2020, 1, 1), 1);
        let now = at("2026-11-24T10:00:00Z");
        let jobs = plan(&request(r#"{"exportFromDate":"lookback"}"#), "l1", &objects, &full, now);
        assert_eq!(jobs.len(), 1, "Account has no lookback");
        assert_eq!(
            (jobs[0].kind, jobs[0].objects.as_slice(), jobs[0].from, jobs[0].to),
            (
                JobKind::FullWindow,
                ["RatePlanCharge".to_owned()].as_slice(),
                Some(at("2026-10-20T10:00:00Z")),
                Some(now)
            )
        );
        assert!(plan(&request(r#"{"exportFromDate":"lookback"}"#), "l2", &objects[..1], &full, now).is_empty());
    }

    #[test]
    fn a_backfill_says_the_instant_it_starts_at_and_the_old_exports() {
        let date = NaiveDate::from_ymd_opt(2022, 5, 4).unwrap();
        assert_eq!(
            backfill_explained(date, DataCenter::Us),
            "changes since 2022-05-04T00:00:00Z (00:00 UTC of 2022-05-04); the old export read 2022-05-04 as US Pacific midnight, 2022-05-04T07:00:00Z, 7 h later"
        );
        let winter = NaiveDate::from_ymd_opt(2022, 1, 4).unwrap();
        assert!(backfill_explained(winter, DataCenter::Us).ends_with("2022-01-04T08:00:00Z, 8 h later"));
        assert_eq!(
            backfill_explained(date, DataCenter::Eu),
            "changes since 2022-05-04T00:00:00Z (00:00 UTC of 2022-05-04, as the old export read it)"
        );
    }
}
