//! Maintenance windows as a calendar: when a window opens and closes, in its IANA time zone,
//! across daylight-saving changes. Pure functions over [`jiff`] (chosen for its time-zone
//! database handling and explicit disambiguation of skipped and repeated local times), tested
//! on the DST weekends themselves.
//!
//! A window opens at its local start time on each day its recurrence names, for its duration:
//! - `once`: on its start date;
//! - `daily`: every day from its start date;
//! - `weekly`: on its weekday (1 = Monday … 7 = Sunday);
//! - `monthly`: on its day of the month; months without that day (the 31st in April) are skipped.
//!
//! A local start time that does not exist on a day (skipped by a spring-forward change) opens at
//! the same wall-clock distance after the change (02:30 → 03:30); one that occurs twice (fall
//! back) opens at the first. The duration is elapsed time: a 2-hour window is 2 hours long even
//! across a change.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use shared::windows::{Recurrence, WindowSpec};

/// Days looked ahead for the next opening (a monthly window on the 31st waits at most two
/// months; a yearly horizon leaves room).
const HORIZON_DAYS: i64 = 400;

/// A window checked and ready to compute with.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    recurrence: Recurrence,
    start_date: Date,
    start_time: Time,
    duration: SignedDuration,
    weekday: Option<i8>,
    day_of_month: Option<i8>,
}

/// What is wrong with a window, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field.
    pub field: &'static str,
    /// Why.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// Longest window per recurrence, in minutes: a window must close before its next opening.
fn max_minutes(r: Recurrence) -> u32 {
    match r {
        Recurrence::Once => 7 * 24 * 60,
        Recurrence::Daily => 24 * 60,
        Recurrence::Weekly => 7 * 24 * 60,
        Recurrence::Monthly => 28 * 24 * 60,
    }
}

impl Calendar {
    /// Checks `spec`: a known IANA time zone, a real date and time, a duration that fits the
    /// recurrence, the weekday or day of the month the recurrence needs.
    pub fn new(spec: &WindowSpec) -> Result<Self, Invalid> {
        let tz = TimeZone::get(spec.time_zone.trim()).map_err(|_| {
            invalid(
                "time_zone",
                format!(
                    "{:?} is not a time zone of the IANA database (for example Europe/Berlin or UTC).",
                    spec.time_zone.chars().take(64).collect::<String>()
                ),
            )
        })?;
        let start_date: Date = spec
            .start_date
            .parse()
            .map_err(|_| invalid("start_date", "The start date is a date as YYYY-MM-DD."))?;
        let start_time: Time = spec
            .start_time
            .parse()
            .map_err(|_| invalid("start_time", "The start time is a time of day as HH:MM."))?;
        if spec.duration_minutes == 0 {
            return Err(invalid(
                "duration_minutes",
                "A window ends after it starts: give it at least one minute.",
            ));
        }
        let most = max_minutes(spec.recurrence);
        if spec.duration_minutes > most {
            return Err(invalid(
                "duration_minutes",
                format!(
                    "A {} window lasts at most {} minutes, so that it closes before it opens again.",
                    spec.recurrence.as_str(),
                    most
                ),
            ));
        }
        let weekday = match spec.recurrence {
            Recurrence::Weekly => match spec.weekday {
                Some(d @ 1..=7) => Some(i8::try_from(d).unwrap_or(1)),
                _ => {
                    return Err(invalid(
                        "weekday",
                        "A weekly window needs its weekday: 1 (Monday) to 7 (Sunday).",
                    ))
                }
            },
            _ => None,
        };
        let day_of_month = match spec.recurrence {
            Recurrence::Monthly => match spec.day_of_month {
                Some(d @ 1..=31) => Some(i8::try_from(d).unwrap_or(1)),
                _ => {
                    return Err(invalid(
                        "day_of_month",
                        "A monthly window needs its day of the month: 1 to 31.",
                    ))
                }
            },
            _ => None,
        };
        Ok(Self {
            tz,
            recurrence: spec.recurrence,
            start_date,
            start_time,
            duration: SignedDuration::from_mins(i64::from(spec.duration_minutes)),
            weekday,
            day_of_month,
        })
    }

    fn opens_on(&self, d: Date) -> bool {
        if d < self.start_date {
            return false;
        }
        match self.recurrence {
            Recurrence::Once => d == self.start_date,
            Recurrence::Daily => true,
            Recurrence::Weekly => Some(d.weekday().to_monday_one_offset()) == self.weekday,
            Recurrence::Monthly => Some(d.day()) == self.day_of_month,
        }
    }

    /// The opening and closing of the window on local date `d`.
    fn on(&self, d: Date) -> Option<(Timestamp, Timestamp)> {
        let open = d
            .to_datetime(self.start_time)
            .to_zoned(self.tz.clone())
            .ok()?;
        let open = open.timestamp();
        Some((open, open.checked_add(self.duration).ok()?))
    }

    /// The window open at `at`, or the next one to open after it: (opens, closes). `None` when
    /// it never opens again (a one-time window that has ended).
    pub fn next(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        // Start early enough to see a window that opened before `at` and is still open.
        let local = at.to_zoned(self.tz.clone()).date();
        let back = self.duration.as_hours() / 24 + 1;
        let mut d = local.checked_sub(jiff::Span::new().days(back)).ok()?;
        for _ in 0..(HORIZON_DAYS + back) {
            if self.opens_on(d) {
                if let Some((open, close)) = self.on(d) {
                    if close > at {
                        return Some((open, close));
                    }
                }
            }
            if self.recurrence == Recurrence::Once && d > self.start_date {
                return None;
            }
            d = d.tomorrow().ok()?;
        }
        None
    }

    /// Whether the window is open at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        self.next(at).is_some_and(|(open, _)| open <= at)
    }
}

/// Converts a stored naive UTC time to a timestamp.
pub fn timestamp_of(t: chrono::NaiveDateTime) -> Timestamp {
    Timestamp::from_second(t.and_utc().timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Converts a timestamp to a naive UTC time (as stored).
pub fn naive_of(t: Timestamp) -> chrono::NaiveDateTime {
    chrono::DateTime::from_timestamp(t.as_second(), 0)
        .unwrap_or_default()
        .naive_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(r: Recurrence, tz: &str, date: &str, time: &str, minutes: u32) -> WindowSpec {
        WindowSpec {
            name: "w".into(),
            recurrence: r,
            time_zone: tz.into(),
            start_date: date.into(),
            start_time: time.into(),
            duration_minutes: minutes,
            weekday: None,
            day_of_month: None,
            enabled: true,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_daily_window_keeps_its_local_time_across_both_dst_changes() {
        let c = Calendar::new(&spec(
            Recurrence::Daily,
            "Europe/Berlin",
            "2026-03-01",
            "01:00",
            120,
        ))
        .unwrap();
        // Before the spring change 01:00 CET is 00:00 UTC; after it, 01:00 CEST is 23:00 UTC.
        assert_eq!(
            c.next(ts("2026-03-28T12:00:00Z")),
            Some((ts("2026-03-29T00:00:00Z"), ts("2026-03-29T02:00:00Z")))
        );
        assert_eq!(
            c.next(ts("2026-03-29T12:00:00Z")),
            Some((ts("2026-03-29T23:00:00Z"), ts("2026-03-30T01:00:00Z")))
        );
        // And back in autumn.
        assert_eq!(
            c.next(ts("2026-10-25T12:00:00Z")),
            Some((ts("2026-10-26T00:00:00Z"), ts("2026-10-26T02:00:00Z")))
        );
    }

    #[test]
    fn skipped_and_repeated_local_times_open_once_and_predictably() {
        let c = Calendar::new(&spec(
            Recurrence::Daily,
            "Europe/Berlin",
            "2026-03-01",
            "02:30",
            60,
        ))
        .unwrap();
        // 02:30 does not exist on 29 March (02:00 → 03:00): the window opens at 03:30 CEST.
        assert_eq!(
            c.next(ts("2026-03-28T23:00:00Z")).unwrap().0,
            ts("2026-03-29T01:30:00Z")
        );
        // 02:30 happens twice on 25 October: the window opens at the first (CEST).
        assert_eq!(
            c.next(ts("2026-10-24T23:00:00Z")).unwrap().0,
            ts("2026-10-25T00:30:00Z")
        );
        // Elapsed time: one hour after the first 02:30 is the second 02:30.
        assert_eq!(
            c.next(ts("2026-10-24T23:00:00Z")).unwrap().1,
            ts("2026-10-25T01:30:00Z")
        );
    }

    #[test]
    fn an_open_window_is_answered_until_it_closes() {
        let c = Calendar::new(&spec(Recurrence::Daily, "UTC", "2026-01-01", "22:00", 240)).unwrap();
        // Open from 22:00 to 02:00: at 01:00 the window of the day before is still open.
        let at = ts("2026-06-02T01:00:00Z");
        assert_eq!(
            c.next(at),
            Some((ts("2026-06-01T22:00:00Z"), ts("2026-06-02T02:00:00Z")))
        );
        assert!(c.is_open(at));
        assert!(!c.is_open(ts("2026-06-02T02:00:00Z")));
    }

    #[test]
    fn weekly_monthly_and_one_time_windows() {
        let mut w = spec(
            Recurrence::Weekly,
            "America/New_York",
            "2026-01-01",
            "03:00",
            60,
        );
        w.weekday = Some(7);
        let c = Calendar::new(&w).unwrap();
        // Sunday 8 March 2026 is the US spring change; 03:00 EDT exists (07:00 UTC).
        assert_eq!(
            c.next(ts("2026-03-05T00:00:00Z")).unwrap().0,
            ts("2026-03-08T07:00:00Z")
        );
        let mut m = spec(Recurrence::Monthly, "UTC", "2026-01-01", "04:00", 60);
        m.day_of_month = Some(31);
        let c = Calendar::new(&m).unwrap();
        // No 31st in April: the next is 31 May.
        assert_eq!(
            c.next(ts("2026-04-01T00:00:00Z")).unwrap().0,
            ts("2026-05-31T04:00:00Z")
        );
        let c = Calendar::new(&spec(Recurrence::Once, "UTC", "2026-12-24", "20:00", 30)).unwrap();
        assert_eq!(
            c.next(ts("2026-12-01T00:00:00Z")).unwrap().0,
            ts("2026-12-24T20:00:00Z")
        );
        assert_eq!(c.next(ts("2026-12-24T20:30:00Z")), None, "over for good");
    }

    #[test]
    fn bad_windows_name_their_field() {
        let field = |s: WindowSpec| Calendar::new(&s).unwrap_err().field;
        assert_eq!(
            field(spec(
                Recurrence::Daily,
                "Mars/Olympus",
                "2026-01-01",
                "01:00",
                60
            )),
            "time_zone"
        );
        assert_eq!(
            field(spec(Recurrence::Daily, "UTC", "2026-02-30", "01:00", 60)),
            "start_date"
        );
        assert_eq!(
            field(spec(Recurrence::Daily, "UTC", "2026-01-01", "25:00", 60)),
            "start_time"
        );
        assert_eq!(
            field(spec(Recurrence::Daily, "UTC", "2026-01-01", "01:00", 0)),
            "duration_minutes"
        );
        assert_eq!(
            field(spec(Recurrence::Daily, "UTC", "2026-01-01", "01:00", 1441)),
            "duration_minutes"
        );
        assert_eq!(
            field(spec(Recurrence::Weekly, "UTC", "2026-01-01", "01:00", 60)),
            "weekday"
        );
        let mut m = spec(Recurrence::Monthly, "UTC", "2026-01-01", "01:00", 60);
        m.day_of_month = Some(32);
        assert_eq!(field(m), "day_of_month");
    }
}
