//! Proleptic Gregorian calendar arithmetic (Howard Hinnant's algorithms), shared by poll mode's utime
//! ticks and the binlog's TIMESTAMP values.

/// Days from 0000-03-01 in the proleptic Gregorian calendar (only differences and the round trip with
/// [`civil_from_days`] matter).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe
}

pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days from 1970-01-01 to the same day counted by [`days_from_civil`] (0000-03-01 is day 0).
pub const UNIX_EPOCH_DAY: i64 = 719_468;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_the_unix_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), UNIX_EPOCH_DAY);
        for (y, m, d) in [(2024, 2, 29), (2000, 3, 1), (1, 1, 1), (9999, 12, 31)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
    }
}
