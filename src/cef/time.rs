//! CEF timestamps: epoch milliseconds, `MMM dd yyyy HH:mm:ss[.SSS][ zone]`
//! and `MMM dd HH:mm:ss[.SSS]`.

use super::Error;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1-12, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The calendar year (UTC) of `ms` since the epoch.
pub fn year_of(ms: i64) -> i32 {
    civil_from_days(ms.div_euclid(86_400_000)).0 as i32
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A cursor over the value that reports 1-based columns.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn err(&self, expected: &'static str) -> Error {
        Error::at(self.pos + 1, expected)
    }

    fn digits(&mut self, min: usize, max: usize, expected: &'static str) -> Result<u32, Error> {
        let start = self.pos;
        let mut v: u32 = 0;
        while self.pos < self.s.len() && self.pos - start < max && self.s[self.pos].is_ascii_digit()
        {
            v = v * 10 + u32::from(self.s[self.pos] - b'0');
            self.pos += 1;
        }
        if self.pos - start < min {
            self.pos = start;
            return Err(self.err(expected));
        }
        Ok(v)
    }

    fn byte(&mut self, b: u8, expected: &'static str) -> Result<(), Error> {
        if self.s.get(self.pos) == Some(&b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(expected))
        }
    }

    fn spaces(&mut self) -> usize {
        let start = self.pos;
        while self.s.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        self.pos - start
    }

    fn peek_is_time(&self) -> bool {
        self.s.get(self.pos + 2) == Some(&b':') || self.s.get(self.pos + 1) == Some(&b':')
    }
}

/// Parses a CEF time into ms since the epoch. A date without a year takes
/// the year that puts it at most a day after `reference_ms` (the time of
/// reading: log lines are not from the future, so `Dec 31` read on 1
/// January is last year's); a date without a zone is UTC.
pub fn parse_time(value: &str, reference_ms: i64) -> Result<i64, Error> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<i64>()
            .map_err(|_| Error::at(1, "epoch milliseconds that fit in 64 bits"));
    }
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let month = value
        .get(..3)
        .and_then(|m| MONTHS.iter().position(|n| n.eq_ignore_ascii_case(m)))
        .ok_or_else(|| c.err("epoch milliseconds or a month name (Jan..Dec)"))?
        as u32
        + 1;
    c.pos = 3;
    if c.spaces() == 0 {
        return Err(c.err("a space after the month"));
    }
    let day_col = c.pos;
    let day = c.digits(1, 2, "a day of month")?;
    if c.spaces() == 0 {
        return Err(c.err("a space after the day"));
    }
    let explicit_year = if c.peek_is_time() {
        None
    } else {
        let y = c.digits(4, 4, "a four-digit year or HH:mm:ss")?;
        if c.spaces() == 0 {
            return Err(c.err("a space after the year"));
        }
        Some(i64::from(y))
    };
    let hour = c.digits(2, 2, "HH")?;
    c.byte(b':', "':' after the hour")?;
    let minute = c.digits(2, 2, "mm")?;
    c.byte(b':', "':' after the minutes")?;
    let second = c.digits(2, 2, "ss")?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err(Error::at(
            c.pos - 7,
            "a time of day within 00:00:00 and 23:59:60",
        ));
    }
    let millis = if c.s.get(c.pos) == Some(&b'.') {
        c.pos += 1;
        let start = c.pos;
        let v = c.digits(1, 3, "milliseconds after '.'")?;
        v * 10u32.pow(3 - (c.pos - start) as u32)
    } else {
        0
    };
    let offset_min = if c.spaces() > 0 && c.pos < c.s.len() {
        parse_zone(&mut c)?
    } else {
        0
    };
    if c.pos != c.s.len() {
        return Err(c.err("end of the time value"));
    }
    let at = |year: i64| -> Option<i64> {
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let secs = days_from_civil(year, month, day) * 86_400
            + i64::from(hour) * 3_600
            + i64::from(minute) * 60
            + i64::from(second)
            - offset_min * 60;
        Some(secs * 1000 + i64::from(millis))
    };
    let invalid_day = || Error::at(day_col + 1, "a day that exists in that month");
    match explicit_year {
        Some(year) => at(year).ok_or_else(invalid_day),
        None => {
            let year = i64::from(year_of(reference_ms));
            match at(year) {
                Some(ms) if ms <= reference_ms.saturating_add(86_400_000) => Ok(ms),
                _ => at(year - 1).ok_or_else(invalid_day),
            }
        }
    }
}

/// `UTC`, `GMT`, `Z`, or an offset `+HH:MM` / `+HHMM` (optionally after
/// `UTC`/`GMT`). Returns minutes east of UTC.
fn parse_zone(c: &mut Cursor<'_>) -> Result<i64, Error> {
    let rest = &c.s[c.pos..];
    for name in [&b"UTC"[..], b"GMT", b"Z"] {
        if rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name) {
            c.pos += name.len();
            break;
        }
    }
    let sign = match c.s.get(c.pos) {
        None => return Ok(0),
        Some(b'+') => 1,
        Some(b'-') => -1,
        Some(_) => return Err(c.err("a time zone: UTC, GMT, Z or an offset like +01:00")),
    };
    c.pos += 1;
    let hours = c.digits(2, 2, "two-digit offset hours")?;
    if c.s.get(c.pos) == Some(&b':') {
        c.pos += 1;
    }
    let minutes = c.digits(2, 2, "two-digit offset minutes")?;
    if hours > 18 || minutes > 59 {
        return Err(c.err("an offset within ±18:00"));
    }
    Ok(sign * i64::from(hours * 60 + minutes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn civil_roundtrip_and_years() {
        for days in [-800_000i64, -1, 0, 59, 11_016, 19_782, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(year_of(1_700_000_000_000), 2023);
        assert_eq!(year_of(-1), 1969);
    }

    #[test]
    fn epoch_millis() {
        assert_eq!(parse_time("1700000000123", 2000), Ok(1_700_000_000_123));
        assert!(parse_time("99999999999999999999", 2000).is_err());
    }

    #[test]
    fn date_with_year_and_zones() {
        // 2023-11-14T22:13:20Z = 1_700_000_000 s
        assert_eq!(parse_time("Nov 14 2023 22:13:20", 0), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("nov 14 2023 22:13:20.5", 0),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            parse_time("Nov 14 2023 22:13:20.123 UTC", 0),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_time("Nov 14 2023 23:13:20 +01:00", 0),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("Nov 14 2023 17:13:20 GMT-0500", 0),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("Nov 14 2023 22:13:20 Z", 0),
            Ok(1_700_000_000_000)
        );
    }

    /// 2023-11-20, a few days after the dates the tests use.
    const REF_2023: i64 = 1_700_500_000_000;

    #[test]
    fn date_without_year_takes_the_year_before_the_reference() {
        assert_eq!(
            parse_time("Nov 14 22:13:20", REF_2023),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("Nov 14 22:13:20.007", REF_2023),
            Ok(1_700_000_000_007)
        );
        assert_eq!(
            parse_time("Feb 29 00:00:00", REF_2023).unwrap_err().column,
            5
        );
        // Read on 1 January 2024, 'Dec 31' is from 2023; 'Jan 2' is a day
        // ahead at most, so this year.
        let new_year_2024 = 1_704_067_200_000;
        assert_eq!(
            parse_time("Dec 31 23:00:00", new_year_2024),
            Ok(new_year_2024 - 3_600_000)
        );
        assert_eq!(
            parse_time("Jan 02 00:00:00", new_year_2024),
            Ok(new_year_2024 + 86_400_000)
        );
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse_time("Foo 14 2023 22:13:20", 0).unwrap_err();
        assert_eq!(e.column, 1);
        let e = parse_time("Nov 14 2023 22-13:20", 0).unwrap_err();
        assert_eq!((e.column, e.expected.as_ref()), (15, "':' after the hour"));
        let e = parse_time("Nov 14 2023 22:13:20 Mars", 0).unwrap_err();
        assert_eq!(e.column, 22);
        let e = parse_time("Nov 14 2023 25:13:20", 0).unwrap_err();
        assert!(e.expected.contains("time of day"));
        assert!(parse_time("", 0).is_err());
    }
}
