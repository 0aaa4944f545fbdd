//! The cron schedules of `syncWindows`, with the meaning of the Go library
//! External Secrets uses (robfig/cron v3, its standard 5-field parser with
//! descriptors), evaluated in UTC:
//! - fields `minute hour day-of-month month day-of-week`; `*`, `?`,
//!   `a-b`, `a/n` (= `a-max/n`), `*/n`, lists; month and weekday names;
//!   weekday 0-6 (Sunday 0; 7 is refused, as in Go);
//! - when both day fields are restricted a day matches either (OR), when
//!   either is `*` (or `?`) without a step, both must (AND);
//! - `@yearly @annually @monthly @weekly @daily @midnight @hourly`, and
//!   `@every <Go duration>` (at least 1s, whole seconds), which in that
//!   library is not anchored to any clock: the next firing is always
//!   `t + delay`;
//! - no firing within five years: none at all (`0 0 30 2 *`).
//!
//! Neither the `cron` crate (6-7 fields with seconds) nor `croner` (its
//! own `L`/`W`/`#` extensions, different day-field rules) reads these
//! the same way, hence this small parser. `CRON_TZ=`/`TZ=` prefixes are
//! refused (the CRD's pattern refuses them too).

use super::{NANOS_PER_SEC, Nanos, go_parse_duration};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Spec(Spec),
    /// `@every`: the delay in nanoseconds (whole seconds, at least one).
    Every(i128),
}

/// Bit masks of allowed values; bit 63 marks a `*` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

fn bits(min: u32, max: u32, step: u32) -> u64 {
    let mut b = 0u64;
    let mut i = min;
    while i <= max {
        b |= 1 << i;
        i = match i.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    b
}

fn all(r: &Bounds) -> u64 {
    bits(r.min, r.max, 1) | STAR
}

impl Schedule {
    /// Parses `text`; the error says what is wrong (the schedule is not
    /// secret, but is not echoed either, the caller names the field).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        if text.is_empty() {
            return Err("is empty".to_owned());
        }
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            return Err("time zones are not supported: schedules are in UTC".to_owned());
        }
        if let Some(desc) = text.strip_prefix('@') {
            return descriptor(desc);
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ));
        }
        Ok(Schedule::Spec(Spec {
            minute: field(fields[0], &MINUTES)?,
            hour: field(fields[1], &HOURS)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTHS)?,
            dow: field(fields[4], &DOW)?,
        }))
    }

    /// The first firing strictly after `t` (at second granularity, as in
    /// Go: `t` is first moved to the next whole second), or none within
    /// five years.
    pub fn next(&self, t: Nanos) -> Option<Nanos> {
        match self {
            Schedule::Every(delay) => Some(t - t.rem_euclid(NANOS_PER_SEC) + delay),
            Schedule::Spec(s) => s.next(t),
        }
    }
}

fn descriptor(desc: &str) -> Result<Schedule, String> {
    let every = |m: u64, h: u64, dom: u64, month: u64, dow: u64| {
        Ok(Schedule::Spec(Spec {
            minute: m,
            hour: h,
            dom,
            month,
            dow,
        }))
    };
    match desc {
        "yearly" | "annually" => every(1, 1, 1 << 1, 1 << 1, all(&DOW)),
        "monthly" => every(1, 1, 1 << 1, all(&MONTHS), all(&DOW)),
        "weekly" => every(1, 1, all(&DOM), all(&MONTHS), 1),
        "daily" | "midnight" => every(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "hourly" => every(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => {
            let Some(d) = desc.strip_prefix("every ") else {
                return Err("unrecognized descriptor".to_owned());
            };
            let nanos = go_parse_duration(d)?;
            // Go: under a second becomes a second; then whole seconds.
            let nanos = i128::from(nanos).max(NANOS_PER_SEC);
            Ok(Schedule::Every(nanos - nanos % NANOS_PER_SEC))
        }
    }
}

fn field(text: &str, r: &Bounds) -> Result<u64, String> {
    text.split(',')
        .try_fold(0u64, |acc, part| Ok(acc | range(part, r)?))
}

fn number(text: &str, r: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some((_, v)) = r.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    // Go's strconv.Atoi: an optional sign, decimal digits.
    let n: i64 = text
        .parse()
        .map_err(|_| format!("failed to parse int from {text:?}"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed"));
    }
    u32::try_from(n).map_err(|_| format!("{n} is out of range"))
}

fn range(expr: &str, r: &Bounds) -> Result<u64, String> {
    let (range_part, step_part) = match expr.split_once('/') {
        Some((_, b)) if b.contains('/') => return Err(format!("too many slashes: {expr:?}")),
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let low_high: Vec<&str> = range_part.split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end, mut extra) = if range_part == "*" || range_part == "?" {
        (r.min, r.max, STAR)
    } else {
        let start = number(low_high[0], r)?;
        let end = match low_high.len() {
            1 => start,
            2 => number(low_high[1], r)?,
            _ => return Err(format!("too many hyphens: {expr:?}")),
        };
        (start, end, 0)
    };
    let step = match step_part {
        None => 1,
        Some(s) => {
            let step = number(s, &MINUTES)?;
            if single {
                end = r.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < r.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({})",
            r.min
        ));
    }
    if end > r.max {
        return Err(format!("end of range ({end}) above maximum ({})", r.max));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end})"
        ));
    }
    if step == 0 {
        return Err("step of range should be a positive number".to_owned());
    }
    Ok(bits(start, end, step) | extra)
}

/// A UTC civil time at second granularity.
#[derive(Debug, Clone, Copy)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil and its inverse.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Civil {
    fn from_secs(secs: i64) -> (Civil, u32) {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        (
            Civil {
                year,
                month,
                day,
                hour: (rem / 3600) as u32,
                minute: (rem % 3600 / 60) as u32,
            },
            (rem % 60) as u32,
        )
    }

    fn to_nanos(self) -> Nanos {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60;
        i128::from(secs) * NANOS_PER_SEC
    }

    fn weekday(&self) -> u32 {
        // 1970-01-01 was a Thursday.
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as u32
    }

    fn add_day(&mut self) {
        self.day += 1;
        if self.day > days_in_month(self.year, self.month) {
            self.day = 1;
            self.add_month();
        }
    }

    fn add_month(&mut self) {
        self.month += 1;
        if self.month > 12 {
            self.month = 1;
            self.year += 1;
        }
    }
}

impl Spec {
    fn day_matches(&self, c: &Civil) -> bool {
        let dom = self.dom & (1 << c.day) != 0;
        let dow = self.dow & (1 << c.weekday()) != 0;
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// robfig's `SpecSchedule.Next`, field by field, in UTC.
    fn next(&self, t: Nanos) -> Option<Nanos> {
        let secs = i64::try_from(t.div_euclid(NANOS_PER_SEC))
            .ok()?
            .checked_add(1)?;
        let (mut c, second) = Civil::from_secs(secs);
        // The seconds field is always 0: Go's seconds loop would carry
        // into the next minute, so start there (no field is reset by it).
        let mut added = false;
        if second != 0 {
            c.minute += 1;
            if c.minute == 60 {
                c.minute = 0;
                c.hour += 1;
                if c.hour == 24 {
                    c.hour = 0;
                    c.add_day();
                }
            }
        }
        let year_limit = c.year + 5;
        'wrap: loop {
            if c.year > year_limit {
                return None;
            }
            while self.month & (1 << c.month) == 0 {
                if !added {
                    added = true;
                    c.day = 1;
                    c.hour = 0;
                    c.minute = 0;
                }
                c.add_month();
                if c.month == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&c) {
                if !added {
                    added = true;
                    c.hour = 0;
                    c.minute = 0;
                }
                c.add_day();
                if c.day == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & (1 << c.hour) == 0 {
                if !added {
                    added = true;
                    c.minute = 0;
                }
                c.hour += 1;
                if c.hour == 24 {
                    c.hour = 0;
                    c.add_day();
                    continue 'wrap;
                }
            }
            while self.minute & (1 << c.minute) == 0 {
                added = true;
                c.minute += 1;
                if c.minute == 60 {
                    c.minute = 0;
                    c.hour += 1;
                    if c.hour == 24 {
                        c.hour = 0;
                        c.add_day();
                    }
                    continue 'wrap;
                }
            }
            return Some(c.to_nanos());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: i64) -> Nanos {
        i128::from(
            days_from_civil(y, mo, d) * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + s,
        ) * NANOS_PER_SEC
    }

    fn next(expr: &str, t: Nanos) -> Option<Nanos> {
        Schedule::parse(expr).expect("valid").next(t)
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 59, 10_957, 20_605, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_875), (2024, 6, 1));
    }

    #[test]
    fn next_like_robfig() {
        let t = at(2026, 6, 1, 22, 0, 0);
        assert_eq!(next("0 22 * * *", t), Some(at(2026, 6, 2, 22, 0, 0)));
        assert_eq!(next("0 22 * * *", t - 1), Some(t));
        assert_eq!(
            next("*/15 * * * *", at(2026, 6, 1, 22, 7, 30)),
            Some(at(2026, 6, 1, 22, 15, 0))
        );
        // 2026-06-01 is a Monday; weekdays 1-5 at 22:00.
        assert_eq!(
            next("0 22 * * 1-5", at(2026, 6, 5, 23, 0, 0)),
            Some(at(2026, 6, 8, 22, 0, 0))
        );
        // Both day fields restricted: OR.
        assert_eq!(
            next("0 0 13 * fri", at(2026, 6, 1, 0, 0, 0)),
            Some(at(2026, 6, 5, 0, 0, 0))
        );
        assert_eq!(
            next("0 0 29 2 *", at(2026, 1, 1, 0, 0, 0)),
            Some(at(2028, 2, 29, 0, 0, 0))
        );
        assert_eq!(next("0 0 30 2 *", at(2026, 1, 1, 0, 0, 0)), None);
        assert_eq!(next("@weekly", t), Some(at(2026, 6, 7, 0, 0, 0)));
        assert_eq!(next("@yearly", t), Some(at(2027, 1, 1, 0, 0, 0)));
        assert_eq!(next("@hourly", t), Some(at(2026, 6, 1, 23, 0, 0)));
        assert_eq!(next("@every 90m", t + 5), Some(t + 90 * 60 * NANOS_PER_SEC));
        assert_eq!(next("@every 10ms", t), Some(t + NANOS_PER_SEC));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "not-a-cron",
            "* * * *",
            "60 * * * *",
            "* * * * 7",
            "5-1 * * * *",
            "*/0 * * * *",
            "1/2/3 * * * *",
            "-1 * * * *",
            "@fortnightly",
            "@every x",
            "CRON_TZ=UTC 0 22 * * *",
            "",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert!(Schedule::parse("0 22 ? JAN-dec MON,wed").is_ok());
    }
}
