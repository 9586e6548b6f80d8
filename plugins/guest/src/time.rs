//! RFC 3339 timestamps to and from milliseconds since the Unix epoch (UTC).
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)`, with `t`/`z` also
//! accepted in lower case. Fractions finer than a millisecond are truncated
//! (towards the past). Leap seconds (`:60`) are rejected. The civil-date
//! arithmetic is Howard Hinnant's `days_from_civil` / `civil_from_days`.

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    parse_inner(text.as_bytes())
        .map_err(|why| format!("invalid RFC 3339 timestamp {text:?}: {why}"))
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// Years outside 0000–9999 cannot be written in RFC 3339; they come out with
/// more digits or a sign and will not parse back.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let hh = in_day / 3_600_000;
    let mm = in_day / 60_000 % 60;
    let ss = in_day / 1000 % 60;
    let frac = in_day % 1000;
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:03}Z")
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d`.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since
/// 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whether `year` is a Gregorian leap year.
pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Number of days in `month` (1–12) of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize, what: &str) -> Result<u32, String> {
        let end = self.pos + n;
        let slice = self
            .bytes
            .get(self.pos..end)
            .filter(|s| s.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("expected {n} digits of {what} at offset {}", self.pos))?;
        self.pos = end;
        Ok(slice
            .iter()
            .fold(0, |acc, b| acc * 10 + u32::from(b - b'0')))
    }

    fn expect(&mut self, options: &[u8], what: &str) -> Result<u8, String> {
        match self.bytes.get(self.pos) {
            Some(b) if options.contains(b) => {
                self.pos += 1;
                Ok(*b)
            }
            _ => Err(format!("expected {what} at offset {}", self.pos)),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
}

fn parse_inner(bytes: &[u8]) -> Result<i64, String> {
    let mut c = Cursor { bytes, pos: 0 };
    let year = c.digits(4, "year")?;
    c.expect(b"-", "'-'")?;
    let month = c.digits(2, "month")?;
    c.expect(b"-", "'-'")?;
    let day = c.digits(2, "day")?;
    c.expect(b"Tt", "'T'")?;
    let hour = c.digits(2, "hour")?;
    c.expect(b":", "':'")?;
    let minute = c.digits(2, "minute")?;
    c.expect(b":", "':'")?;
    let second = c.digits(2, "second")?;
    let mut millis = 0u32;
    if c.peek() == Some(b'.') {
        c.pos += 1;
        let start = c.pos;
        while c.peek().is_some_and(|b| b.is_ascii_digit()) {
            if c.pos - start < 3 {
                millis = millis * 10 + u32::from(bytes[c.pos] - b'0');
            }
            c.pos += 1;
        }
        let n = c.pos - start;
        if n == 0 {
            return Err(format!("expected fraction digits at offset {start}"));
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes: i64 = match c.expect(b"Zz+-", "'Z' or a ±hh:mm offset")? {
        b'Z' | b'z' => 0,
        sign => {
            let oh = c.digits(2, "offset hour")?;
            c.expect(b":", "':' in offset")?;
            let om = c.digits(2, "offset minute")?;
            if oh > 23 || om > 59 {
                return Err(format!("offset {oh:02}:{om:02} out of range"));
            }
            let total = i64::from(oh * 60 + om);
            if sign == b'-' { -total } else { total }
        }
    };
    if c.pos != bytes.len() {
        return Err(format!("unexpected trailing text at offset {}", c.pos));
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} out of range"));
    }
    let year = i64::from(year);
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!("day {day} out of range for {year:04}-{month:02}"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!(
            "time {hour:02}:{minute:02}:{second:02} out of range"
        ));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    Ok(secs * 1000 + i64::from(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_420_800_000; // 2026-11-23T08:00:00Z

    #[test]
    fn parses_utc() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-11-23T08:00:00Z"), Ok(T0));
        assert_eq!(parse_rfc3339("2026-11-23T08:00:00.123Z"), Ok(T0 + 123));
        assert_eq!(parse_rfc3339("2026-11-23t08:00:00.1z"), Ok(T0 + 100));
        assert_eq!(parse_rfc3339("2026-11-23T08:00:00.12Z"), Ok(T0 + 120));
        assert_eq!(
            parse_rfc3339("2026-11-23T08:00:00.123999999Z"),
            Ok(T0 + 123)
        );
    }

    #[test]
    fn parses_offsets() {
        assert_eq!(parse_rfc3339("2026-11-23T09:00:00+01:00"), Ok(T0));
        assert_eq!(parse_rfc3339("2026-11-23T02:30:00.5-05:30"), Ok(T0 + 500));
        assert_eq!(parse_rfc3339("2026-11-23T08:00:00+00:00"), Ok(T0));
        assert_eq!(parse_rfc3339("2026-11-23T08:00:00-00:00"), Ok(T0));
        // Crossing midnight and the year boundary through the offset.
        assert_eq!(
            parse_rfc3339("2027-01-01T01:00:00+02:00"),
            parse_rfc3339("2026-12-31T23:00:00Z")
        );
    }

    #[test]
    fn before_the_epoch() {
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.5Z"), Ok(-500));
        assert_eq!(format_rfc3339_ms(-500), "1969-12-31T23:59:59.500Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn leap_years() {
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_ok());
        assert!(
            parse_rfc3339("2026-02-29T00:00:00Z")
                .unwrap_err()
                .contains("day 29")
        );
        assert!(parse_rfc3339("1900-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339("2026-04-31T00:00:00Z").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(T0 + 123), "2026-11-23T08:00:00.123Z");
        assert_eq!(
            format_rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn round_trips_over_a_wide_range() {
        let mut ms = -62_135_596_800_000i64; // 0001-01-01
        let step = 86_400_000 * 97 + 3_723_456;
        while ms < 253_402_300_799_000 {
            // ..9999-12-31
            assert_eq!(parse_rfc3339(&format_rfc3339_ms(ms)), Ok(ms), "{ms}");
            ms += step;
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in -800_000..800_000i64 {
            if days % 7 != 0 {
                continue;
            }
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "yesterday",
            "2026-11-23",
            "2026-11-23T08:00:00",
            "2026-11-23 08:00:00Z",
            "2026-11-23T08:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T08:60:00Z",
            "2026-11-23T08:00:60Z",
            "2026-11-23T08:00:00.Z",
            "2026-11-23T08:00:00+0100",
            "2026-11-23T08:00:00+24:00",
            "2026-11-23T08:00:00+01:60",
            "2026-11-23T08:00:00Zjunk",
            "26-11-23T08:00:00Z",
            "2026-1-23T08:00:00Z",
            "+2026-11-23T08:00:00Z",
        ] {
            let err = parse_rfc3339(bad).unwrap_err();
            assert!(
                err.starts_with("invalid RFC 3339 timestamp"),
                "{bad}: {err}"
            );
        }
    }
}
