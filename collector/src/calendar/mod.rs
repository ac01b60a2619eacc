//! Norwegian working days and customers' opening hours.
//!
//! Public holidays (DESIGN.md section 3): 1 January, Maundy Thursday, Good Friday, Easter
//! Monday, 1 May, 17 May, Ascension Day, Whit Monday, 25 and 26 December. The Easter-based ones
//! are computed from Easter Sunday (Gregorian computus), never listed. Working days are Monday
//! to Friday without public holidays. Routing (#5) asks whether a customer is open now; the
//! change rules (#6) count working days.
//!
//! Owns: calendar arithmetic only. Time zones come from chrono-tz.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// Easter Sunday of a year (Gregorian; the "anonymous" algorithm, Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// The Norwegian public holidays of a year, with their names, in date order.
pub fn holidays(year: i32) -> Vec<(NaiveDate, &'static str)> {
    let mut out = Vec::with_capacity(10);
    let fixed = |m, d| NaiveDate::from_ymd_opt(year, m, d);
    if let Some(easter) = easter_sunday(year) {
        let rel = |days: i64| easter.checked_add_signed(chrono::TimeDelta::days(days));
        for (date, name) in [
            (rel(-3), "Maundy Thursday"),
            (rel(-2), "Good Friday"),
            (rel(1), "Easter Monday"),
            (rel(39), "Ascension Day"),
            (rel(50), "Whit Monday"),
        ] {
            if let Some(d) = date {
                out.push((d, name));
            }
        }
    }
    for (date, name) in [
        (fixed(1, 1), "New Year's Day"),
        (fixed(5, 1), "Labour Day"),
        (fixed(5, 17), "Constitution Day"),
        (fixed(12, 25), "Christmas Day"),
        (fixed(12, 26), "Boxing Day"),
    ] {
        if let Some(d) = date {
            out.push((d, name));
        }
    }
    out.sort();
    out
}

/// The holiday's name, if `date` is a public holiday.
pub fn holiday(date: NaiveDate) -> Option<&'static str> {
    holidays(date.year())
        .into_iter()
        .find(|(d, _)| *d == date)
        .map(|(_, n)| n)
}

/// Monday to Friday and not a public holiday.
pub fn is_working_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && holiday(date).is_none()
}

/// The date `n` working days after `date` (counting from the day after it).
pub fn add_working_days(date: NaiveDate, n: u32) -> NaiveDate {
    let mut d = date;
    let mut left = n;
    while left > 0 {
        d = d.checked_add_days(Days::new(1)).unwrap_or(d);
        if is_working_day(d) {
            left -= 1;
        }
    }
    d
}

/// One opening line: weekly (`mon-fri 08:00-16:00`) or for a date every year, which replaces
/// the weekly hours of that day (`12-24 08:00-12:00`, `12-31 closed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    days: Vec<Weekday>,
    /// (month, day) for a date line.
    date: Option<(u32, u32)>,
    /// None: closed all day (date lines only).
    hours: Option<(NaiveTime, NaiveTime)>,
}

impl Opening {
    fn covers(&self, date: NaiveDate) -> bool {
        match self.date {
            Some(md) => md == (date.month(), date.day()),
            None => self.days.contains(&date.weekday()),
        }
    }

    fn open_at(&self, time: NaiveTime) -> bool {
        self.hours
            .is_some_and(|(from, to)| from <= time && time < to)
    }
}

/// Why an opening-hours line is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{line}`: {reason} (write e.g. \"mon-fri 08:00-16:00\", \"sat 10:00-14:00\", \"12-24 08:00-12:00\" or \"12-31 closed\")"
)]
pub struct OpeningError {
    /// The line.
    pub line: String,
    /// What is wrong.
    pub reason: String,
}

fn weekday(s: &str) -> Option<Weekday> {
    match s {
        "mon" => Some(Weekday::Mon),
        "tue" => Some(Weekday::Tue),
        "wed" => Some(Weekday::Wed),
        "thu" => Some(Weekday::Thu),
        "fri" => Some(Weekday::Fri),
        "sat" => Some(Weekday::Sat),
        "sun" => Some(Weekday::Sun),
        _ => None,
    }
}

impl std::str::FromStr for Opening {
    type Err = OpeningError;
    fn from_str(line: &str) -> Result<Opening, OpeningError> {
        let bad = |reason: &str| OpeningError {
            line: line.to_owned(),
            reason: reason.to_owned(),
        };
        let (days, hours) = line
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("days and hours are needed"))?;
        let date = match days.split_once('-') {
            Some((m, d))
                if m.len() == 2 && m.chars().chain(d.chars()).all(|c| c.is_ascii_digit()) =>
            {
                let (m, d) = (m.parse::<u32>().unwrap_or(0), d.parse::<u32>().unwrap_or(0));
                // 2024 is a leap year, so 02-29 is a valid line.
                NaiveDate::from_ymd_opt(2024, m, d).ok_or_else(|| bad("no such date (MM-DD)"))?;
                Some((m, d))
            }
            _ => None,
        };
        let days = match (date, days.split_once('-')) {
            (Some(_), _) => Vec::new(),
            (None, Some((a, b))) => {
                let (a, b) = (
                    weekday(a).ok_or_else(|| bad("unknown day"))?,
                    weekday(b).ok_or_else(|| bad("unknown day"))?,
                );
                let mut out = vec![a];
                let mut d = a;
                while d != b {
                    d = d.succ();
                    out.push(d);
                }
                out
            }
            (None, None) => vec![weekday(days).ok_or_else(|| bad("unknown day"))?],
        };
        if hours.trim() == "closed" {
            if date.is_none() {
                return Err(bad(
                    "only a date line (MM-DD) can be `closed`; leave the day out",
                ));
            }
            return Ok(Opening {
                days,
                date,
                hours: None,
            });
        }
        let (from, to) = hours
            .trim()
            .split_once('-')
            .ok_or_else(|| bad("hours are from-to"))?;
        let time = |s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad("times are HH:MM"))
        };
        let (from, to) = (time(from)?, time(to)?);
        if from >= to {
            return Err(bad("the opening must end after it starts"));
        }
        Ok(Opening {
            days,
            date,
            hours: Some((from, to)),
        })
    }
}

/// A customer's weekly opening hours in its time zone; closed on public holidays.
#[derive(Debug, Clone, PartialEq)]
pub struct OpeningHours {
    /// Time zone of the schedule.
    pub tz: Tz,
    /// The weekly openings.
    pub openings: Vec<Opening>,
}

impl OpeningHours {
    /// Parses the schedule lines for a time zone name (e.g. "Europe/Oslo").
    pub fn parse(tz: &str, lines: &[String]) -> Result<OpeningHours, OpeningError> {
        let tz: Tz = tz.parse().map_err(|_| OpeningError {
            line: tz.to_owned(),
            reason: "unknown time zone".into(),
        })?;
        let openings = lines.iter().map(|l| l.parse()).collect::<Result<_, _>>()?;
        Ok(OpeningHours { tz, openings })
    }

    /// Whether the customer is open at `at`.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = self.tz.from_utc_datetime(&at.naive_utc());
        let (date, time) = (local.date_naive(), local.time());
        if holiday(date).is_some() {
            return false;
        }
        // Date lines replace the weekly hours of their day.
        let dated: Vec<&Opening> = self
            .openings
            .iter()
            .filter(|o| o.date.is_some() && o.covers(date))
            .collect();
        if !dated.is_empty() {
            return dated.iter().any(|o| o.open_at(time));
        }
        self.openings
            .iter()
            .any(|o| o.covers(date) && o.open_at(time))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn easter_by_the_computus() {
        for (year, want) in [
            (2024, d(2024, 3, 31)),
            (2025, d(2025, 4, 20)),
            (2026, d(2026, 4, 5)),
            (2027, d(2027, 3, 28)),
            (2030, d(2030, 4, 21)),
            (2038, d(2038, 4, 25)),
            (2285, d(2285, 3, 22)),
        ] {
            assert_eq!(easter_sunday(year), Some(want), "{year}");
        }
    }

    #[test]
    fn holidays_of_2027_and_2030() {
        let names = |y| {
            holidays(y)
                .into_iter()
                .map(|(dt, _)| dt)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(2027),
            [
                d(2027, 1, 1),
                d(2027, 3, 25),
                d(2027, 3, 26),
                d(2027, 3, 29),
                d(2027, 5, 1),
                d(2027, 5, 6),
                d(2027, 5, 17),
                d(2027, 5, 17),
                d(2027, 12, 25),
                d(2027, 12, 26)
            ]
        );
        // In 2027 Whit Monday falls on 17 May.
        assert_eq!(holiday(d(2030, 4, 18)), Some("Maundy Thursday"));
        assert_eq!(holiday(d(2030, 5, 30)), Some("Ascension Day"));
        assert_eq!(holiday(d(2030, 6, 10)), Some("Whit Monday"));
        assert_eq!(
            holiday(d(2030, 4, 21)),
            None,
            "Easter Sunday is a Sunday, not listed"
        );
    }

    #[test]
    fn working_days() {
        let table = [
            (d(2026, 11, 24), true),  // Tuesday
            (d(2026, 11, 28), false), // Saturday
            (d(2026, 5, 17), false),  // 17 May on a Sunday
            (d(2028, 5, 17), false),  // 17 May on a Wednesday
            (d(2026, 12, 24), true),  // Christmas Eve is a working day by the list
            (d(2026, 12, 25), false),
            (d(2027, 3, 26), false), // Good Friday
            (d(2027, 3, 29), false), // Easter Monday
            (d(2027, 3, 30), true),
        ];
        for (date, want) in table {
            assert_eq!(is_working_day(date), want, "{date}");
        }
        // 8 working days across Easter 2027: Tue 23 Mar + 8 = Wed 7 Apr (25, 26, 29 Mar are holidays).
        assert_eq!(add_working_days(d(2027, 3, 23), 8), d(2027, 4, 7));
        // Across Christmas and New Year 2026/27: Mon 21 Dec + 8 = Mon 4 Jan.
        assert_eq!(add_working_days(d(2026, 12, 21), 8), d(2027, 1, 4));
        // Plain weeks: Mon + 8 = Thu of the next week.
        assert_eq!(add_working_days(d(2026, 11, 23), 8), d(2026, 12, 3));
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn opening_hours_in_oslo() {
        let h = OpeningHours::parse(
            "Europe/Oslo",
            &["mon-fri 08:00-16:00".into(), "sat 10:00-14:00".into()],
        )
        .unwrap();
        let table = [
            ("2026-11-24T09:00:00Z", true),  // Tue 10:00 CET
            ("2026-11-24T15:30:00Z", false), // Tue 16:30 CET
            ("2026-11-24T06:59:00Z", false), // Tue 07:59 CET
            ("2026-11-28T10:00:00Z", true),  // Sat 11:00
            ("2026-11-29T10:00:00Z", false), // Sunday
            ("2028-05-17T09:00:00Z", false), // 17 May on a Wednesday
            ("2027-03-26T09:00:00Z", false), // Good Friday
            ("2026-12-24T13:00:00Z", true),  // Christmas Eve 14:00: open by the schedule
            ("2026-12-24T15:30:00Z", false), // Christmas Eve 16:30
            // DST starts Sunday 29 March 2026; Monday 30 March 07:30 CEST = 05:30 UTC: closed,
            // 08:30 CEST = 06:30 UTC: open (an hour earlier in UTC than in winter).
            ("2026-03-30T05:30:00Z", false),
            ("2026-03-30T06:30:00Z", true),
        ];
        for (at, want) in table {
            assert_eq!(h.is_open(utc(at)), want, "{at}");
        }
    }

    #[test]
    fn date_lines_replace_the_weekly_hours_of_their_day() {
        let h = OpeningHours::parse(
            "Europe/Oslo",
            &[
                "mon-fri 08:00-16:00".into(),
                "12-24 08:00-12:00".into(),
                "12-31 closed".into(),
            ],
        )
        .unwrap();
        for (at, want) in [
            ("2026-12-24T09:00:00Z", true),  // Christmas Eve (Thursday) 10:00
            ("2026-12-24T13:00:00Z", false), // Christmas Eve 14:00: closed from noon
            ("2026-12-23T13:00:00Z", true),  // the day before: the weekly hours
            ("2026-12-31T09:00:00Z", false), // New Year's Eve (Thursday): closed
            ("2027-12-24T09:00:00Z", true),  // every year
        ] {
            assert_eq!(h.is_open(utc(at)), want, "{at}");
        }
        for line in ["mon closed", "13-01 08:00-10:00", "02-30 closed"] {
            assert!(line.parse::<Opening>().is_err(), "{line}");
        }
        assert!("02-29 closed".parse::<Opening>().is_ok());
    }

    #[test]
    fn bad_schedules_say_why() {
        for (line, why) in [
            ("mon-fri", "days and hours"),
            ("fun 08:00-16:00", "unknown day"),
            ("mon 8-16", "HH:MM"),
            ("mon 16:00-08:00", "end after"),
        ] {
            let e = line.parse::<Opening>().unwrap_err();
            assert!(e.to_string().contains(why), "{line}: {e}");
        }
        assert!(OpeningHours::parse("Mars/Olympus", &[]).is_err());
    }
}
