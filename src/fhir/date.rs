//! FHIR `date` and `dateTime` values, which may be partial (`2020`, `2020-05`).

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time};

/// Parses a FHIR date or dateTime to an instant. Partial dates resolve to
/// their first moment in UTC; a dateTime without seconds' offset is rejected
/// by FHIR, but a bare date is common and accepted.
pub fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    if s.len() > 10 {
        return OffsetDateTime::parse(s, &Rfc3339).ok();
    }
    parse_date(s).map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
}

/// Parses a FHIR date (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`); a dateTime is cut to its date.
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.get(..10.min(s.len()))?;
    let mut parts = s.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next().map_or(Ok(1), str::parse).ok()?;
    let day: u8 = parts.next().map_or(Ok(1), str::parse).ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn parses_partial_and_full_forms() {
        assert_eq!(parse_date("1950"), Some(date!(1950 - 01 - 01)));
        assert_eq!(parse_date("1950-07"), Some(date!(1950 - 07 - 01)));
        assert_eq!(parse_date("1950-07-14"), Some(date!(1950 - 07 - 14)));
        assert_eq!(parse_date("1950-02-30"), None);
        assert_eq!(
            parse_datetime("2020-05-01T10:00:00+02:00"),
            Some(datetime!(2020-05-01 08:00 UTC))
        );
        assert_eq!(
            parse_datetime("2020-05-01"),
            Some(datetime!(2020-05-01 00:00 UTC))
        );
        assert_eq!(parse_datetime("garbage"), None);
    }
}
