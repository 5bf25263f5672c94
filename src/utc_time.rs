//! UTC calendar time from the system clock, without a time-zone database:
//! what log records and S3 and Azure request signatures print, and the
//! expiry times of AWS temporary credentials.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC time broken down into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// The year (proleptic Gregorian).
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// Day of the month, from 1.
    pub day: u32,
    /// 0 to 23.
    pub hour: u64,
    /// 0 to 59.
    pub minute: u64,
    /// 0 to 59.
    pub second: u64,
    /// 0 to 999,999.
    pub microsecond: u32,
}

impl UtcTime {
    /// The time `seconds` (and `microsecond`) after 1970-01-01 00:00 UTC.
    pub fn from_unix(seconds: u64, microsecond: u32) -> Self {
        let days = (seconds / 86_400) as i64;
        let of_day = seconds % 86_400;
        let (year, month, day) = civil_date(days);
        Self { year, month, day, hour: of_day / 3600, minute: of_day % 3600 / 60, second: of_day % 60, microsecond }
    }

    /// The current time.
    pub fn now() -> Self {
        let since_epoch = since_epoch();
        Self::from_unix(since_epoch.as_secs(), since_epoch.subsec_micros())
    }
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Seconds since 1970-01-01 00:00 UTC now.
pub fn unix_seconds() -> u64 {
    since_epoch().as_secs()
}

/// The HTTP date (RFC 1123, `Tue, 24 Nov 2026 10:12:00 GMT`) of a time in
/// seconds since 1970-01-01 00:00 UTC, as Azure's `x-ms-date` wants it.
pub fn http_date(seconds: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let time = UtcTime::from_unix(seconds, 0);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(seconds / 86_400 % 7) as usize];
    let month = MONTHS[(time.month - 1) as usize];
    format!(
        "{weekday}, {:02} {month} {} {:02}:{:02}:{:02} GMT",
        time.day, time.year, time.hour, time.minute, time.second
    )
}

/// Seconds since 1970-01-01 00:00 UTC of an RFC 3339 UTC time
/// (`2026-11-24T10:50:00Z`, fractions of a second ignored), as AWS writes
/// when temporary credentials expire; None for anything else.
pub fn parse_rfc3339_utc(text: &str) -> Option<u64> {
    let text = text.trim().strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let number = |part: &str| part.parse::<u32>().ok();
    let mut date = date.splitn(3, '-');
    let (year, month, day) = (date.next()?.parse::<i64>().ok()?, number(date.next()?)?, number(date.next()?)?);
    let time = time.split('.').next()?;
    let mut time = time.splitn(3, ':');
    let (hour, minute, second) = (number(time.next()?)?, number(time.next()?)?, number(time.next()?)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let seconds = days_since_epoch(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    u64::try_from(seconds).ok()
}

/// The day count from 1970-01-01 of a proleptic Gregorian date, by Howard
/// Hinnant's `days_from_civil` (the inverse of [`civil_date`]).
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * month_index + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day counted from 1970-01-01, by
/// Howard Hinnant's `civil_from_days`.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_proleptic_gregorian_calendars() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        // 2000 was a leap year, 2100 will not be.
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_780), (2026, 11, 23));
        assert_eq!(civil_date(47_541), (2100, 3, 1));
        assert_eq!(civil_date(47_540), (2100, 2, 28));
    }

    #[test]
    fn rfc3339_times_read_back_as_they_print() {
        for days in [-1, 0, 11_016, 20_780, 47_540, 47_541] {
            let (year, month, day) = civil_date(days);
            assert_eq!(days_since_epoch(year, month, day), days);
        }
        assert_eq!(http_date(1_795_464_341), "Mon, 23 Nov 2026 20:05:41 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // 2026-11-23T20:05:41Z, as the log tests print it.
        assert_eq!(parse_rfc3339_utc("2026-11-23T20:05:41Z"), Some(1_795_464_341));
        assert_eq!(parse_rfc3339_utc("2026-11-23T20:05:41.123Z"), Some(1_795_464_341));
        for bad in ["2026-11-23T20:05:41", "2026-13-01T00:00:00Z", "yesterday", "2026-11-23 20:05:41Z"] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }
}
