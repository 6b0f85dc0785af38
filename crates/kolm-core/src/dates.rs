//! Dates in the two forms kolm writes: RFC 3339 UTC (manifests' `created_at`, receipts) and the
//! DOS date and time every zip header carries. One place, on the `time` crate, so the writer and
//! the verifier cannot disagree about a date.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The zip epoch, 1980-01-01 00:00:00 UTC: DOS dates start there.
const DOS_EPOCH: i64 = 315_532_800;

/// 9999-12-31 23:59:59 UTC: the last second RFC 3339 can write.
pub const LAST_RFC3339: i64 = 253_402_300_799;

/// RFC 3339 UTC, whole seconds (`2026-11-29T21:51:55Z`), of a Unix timestamp; `None` outside
/// the years 0000-9999.
pub fn rfc3339(epoch: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp(epoch).ok()?;
    t.format(&Rfc3339).ok()
}

/// Now, in RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs).unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The Unix timestamp of an RFC 3339 date; `None` if it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// DOS (date, time) of a Unix timestamp (UTC), as RS-1 §3.5 says: from 1980 on (`None` is the
/// zip epoch), the year capped at 2107 (the other fields kept), seconds halved.
pub fn dos_datetime(epoch: Option<i64>) -> (u16, u16) {
    let epoch = epoch.unwrap_or(DOS_EPOCH).clamp(DOS_EPOCH, LAST_RFC3339);
    let t = OffsetDateTime::from_unix_timestamp(epoch).expect("clamped to 1980-9999");
    let y = (t.year() as u16).min(2107);
    let (m, d) = (u8::from(t.month()) as u16, t.day() as u16);
    let (hh, mm, ss) = (t.hour() as u16, t.minute() as u16, t.second() as u16);
    (
        ((y - 1980) << 9) | (m << 5) | d,
        (hh << 11) | (mm << 5) | (ss / 2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for epoch in [0, 951_782_400, 1_700_000_000, 4_102_444_799, -86_400] {
            let s = rfc3339(epoch).unwrap();
            assert_eq!(parse_rfc3339(&s), Some(epoch), "{s}");
        }
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14"), None);
    }

    #[test]
    fn dos_dates_clamp_to_their_range() {
        // 1980-01-01 00:00:00: date 1/1 of year 0, time 0.
        assert_eq!(dos_datetime(None), ((1 << 5) | 1, 0));
        assert_eq!(dos_datetime(Some(0)), dos_datetime(None));
        // 2023-11-14 22:13:20.
        assert_eq!(
            dos_datetime(Some(1_700_000_000)),
            ((43 << 9) | (11 << 5) | 14, (22 << 11) | (13 << 5) | 10)
        );
        // The year is capped at 2107, the rest kept: 9999-12-31 23:59:59 becomes 2107-12-31
        // 23:59:58.
        assert_eq!(
            dos_datetime(Some(i64::MAX)),
            ((127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29)
        );
        // 2200-06-15 12:00:00 is 2107-06-15 12:00:00.
        assert_eq!(
            dos_datetime(Some(7_272_417_600)),
            ((127 << 9) | (6 << 5) | 15, 12 << 11)
        );
    }
}
