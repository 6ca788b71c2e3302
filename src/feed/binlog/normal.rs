//! Row-image values normalised to what the binary protocol returns for the same row, on a connection
//! like [`crate::mysql::db::Db`]'s (`time_zone = '+00:00'`, results in utf8mb4). Keys decoded from the binlog
//! must be bound as parameters and matched by canonical bytes against rows read back, and (later) image
//! values will stand in for the base side of the compare core, so each value must come out in exactly the
//! protocol's form:
//!
//! - TIMESTAMP: the binlog holds seconds (and microseconds) since the epoch; the value becomes the UTC
//!   date-time, which is what a `+00:00` session reads. `0` is the zero date `0000-00-00 00:00:00`.
//! - YEAR: the binlog byte is `year - 1900`, `0` meaning the year `0000`.
//! - ENUM and SET: the binlog holds the index and the member bitmap; they become the member string and
//!   the comma-separated members in definition order, from the value lists the table map carries under
//!   `binlog_row_metadata=FULL`.
//! - Text in any character set other than UTF-8 (latin1, gbk, …) is converted to UTF-8, as the server
//!   converts it for a utf8mb4 connection; binary strings (`BINARY`, `VARBINARY`, `BLOB`) stay bytes, and
//!   a `BINARY(N)` gets back the trailing zero bytes the server leaves out of the image.
//! - MEDIUMINT gets its sign; TIME with 1 or 2 fractional digits is decoded here, because the shared
//!   decoder gets negative fractions wrong.
//! - CHAR: the server strips trailing spaces both in the image and when reading, so nothing is needed.

use mysql_async::Value;
use mysql_common::collations::{Collation, CollationId};

/// How text of a column's character set becomes what a utf8mb4 connection reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Charset {
    /// UTF-8 already (utf8mb3, utf8mb4, ascii), or a charset left as is (see [`Charset::of`])
    Utf8,
    /// the `binary` character set: bytes, never converted
    Binary,
    /// MySQL's latin1, which is Windows-1252 with the five unassigned bytes passed through
    Latin1,
    /// UTF-32 (big-endian)
    Utf32,
    Other(&'static encoding_rs::Encoding),
}

impl Charset {
    /// The conversion for a collation id of the table map.
    pub fn of(collation: u16) -> Charset {
        use encoding_rs::*;
        match charset_name(collation).as_str() {
            "binary" => Charset::Binary,
            "latin1" => Charset::Latin1,
            "utf32" => Charset::Utf32,
            name => Charset::Other(match name {
                "gbk" | "gb2312" => GBK,
                "gb18030" => GB18030,
                "big5" => BIG5,
                "sjis" | "cp932" => SHIFT_JIS,
                "ujis" | "eucjpms" => EUC_JP,
                "euckr" => EUC_KR,
                "cp1250" => WINDOWS_1250,
                "cp1251" => WINDOWS_1251,
                "cp1256" => WINDOWS_1256,
                "cp1257" => WINDOWS_1257,
                "latin2" => ISO_8859_2,
                "greek" => ISO_8859_7,
                "hebrew" => ISO_8859_8,
                "latin5" => WINDOWS_1254,
                "latin7" => ISO_8859_13,
                "koi8r" => KOI8_R,
                "koi8u" => KOI8_U,
                "cp866" => IBM866,
                "macroman" => MACINTOSH,
                "tis620" => WINDOWS_874,
                "ucs2" | "utf16" => UTF_16BE,
                "utf16le" => UTF_16LE,
                // utf8mb3, utf8mb4, ascii; and the rare single-byte sets without a standard decoder
                // (dec8, hp8, swe7, keybcs2, cp850, cp852, armscii8, geostd8, macce), left as bytes.
                _ => return Charset::Utf8,
            }),
        }
    }

    /// Text of this charset as UTF-8; `None` when it already is (or stays bytes).
    pub fn to_utf8(self, b: &[u8]) -> Option<Vec<u8>> {
        match self {
            Charset::Utf8 | Charset::Binary => None,
            Charset::Latin1 => b.iter().any(|c| *c >= 0x80).then(|| latin1_to_utf8(b)),
            Charset::Utf32 => Some(
                b.chunks(4)
                    .map(|c| {
                        let n = c.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x));
                        char::from_u32(n).unwrap_or(char::REPLACEMENT_CHARACTER)
                    })
                    .collect::<String>()
                    .into_bytes(),
            ),
            Charset::Other(enc) => {
                if enc.is_ascii_compatible() && b.is_ascii() {
                    return None;
                }
                Some(enc.decode_without_bom_handling(b).0.into_owned().into_bytes())
            }
        }
    }
}

/// The character set of a collation id, MariaDB's own ids included: 576-738 (the `utf8mb3`… `utf32`
/// `*_myanmar`, `*_thai_520_w2` and similar), 1024-2047 (the NO PAD variant of id - 1024) and 2048 up
/// (the UCA 14 collations of MariaDB 11, 256 ids per character set).
fn charset_name(id: u16) -> String {
    match id {
        576..=578 => "utf8mb3".into(),
        608..=610 => "utf8mb4".into(),
        640..=642 => "ucs2".into(),
        672..=674 => "utf16".into(),
        736..=738 => "utf32".into(),
        1024..=2047 => charset_name(id - 1024),
        2048.. => ["utf8mb3", "utf8mb4", "ucs2", "utf16", "utf32"]
            .get(usize::from((id - 2048) >> 8))
            .copied()
            .unwrap_or("")
            .into(),
        _ => Collation::from(CollationId::from(id)).charset().to_string(),
    }
}

/// MySQL's latin1 is Windows-1252 (with the five unassigned bytes passed through).
pub fn latin1_to_utf8(b: &[u8]) -> Vec<u8> {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}', '\u{90}', '‘',
        '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
    ];
    let s: String =
        b.iter().map(|&c| if (0x80..0xA0).contains(&c) { HIGH[(c - 0x80) as usize] } else { c as char }).collect();
    s.into_bytes()
}

/// A TIMESTAMP's seconds and microseconds since the epoch as the UTC date-time; `0` is the zero date.
pub fn timestamp(secs: i64, micros: u32) -> Value {
    if secs == 0 && micros == 0 {
        return Value::Date(0, 0, 0, 0, 0, 0, 0);
    }
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = crate::calendar::civil_from_days(days + crate::calendar::UNIX_EPOCH_DAY);
    Value::Date(y as u16, m as u8, d as u8, (rest / 3600) as u8, (rest / 60 % 60) as u8, (rest % 60) as u8, micros)
}

/// A TIMESTAMP as the shared decoder gives it (`Int` seconds, or text `secs[.micros]`).
pub(super) fn timestamp_of(v: &Value) -> Option<Value> {
    match v {
        Value::Int(s) => Some(timestamp(*s, 0)),
        Value::Bytes(b) => {
            let s = std::str::from_utf8(b).ok()?;
            let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
            Some(timestamp(secs.parse().ok()?, frac.parse().ok()?))
        }
        _ => None,
    }
}

/// A TIME2 value (`dec` fractional digits) from its image bytes, as MySQL packs it.
pub fn time2(b: &[u8], dec: u8) -> Option<Value> {
    let be = |n: usize| -> Option<i64> { Some(b.get(..n)?.iter().fold(0i64, |acc, x| (acc << 8) | i64::from(*x))) };
    const INT_OFS: i64 = 0x80_0000;
    let packed = match dec {
        1 | 2 => {
            let (mut int, mut frac) = (be(3)? - INT_OFS, i64::from(*b.get(3)?));
            if int < 0 && frac > 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let (mut int, mut frac) = (be(3)? - INT_OFS, be(5)? & 0xFFFF);
            if int < 0 && frac > 0 {
                int += 1;
                frac -= 0x1_0000;
            }
            (int << 24) + frac * 100
        }
        5 | 6 => be(6)? - 0x8000_0000_0000,
        _ => (be(3)? - INT_OFS) << 24,
    };
    let neg = packed < 0;
    let abs = packed.unsigned_abs();
    let hms = abs >> 24;
    let hours = ((hms >> 12) % (1 << 10)) as u32;
    Some(Value::Time(
        neg,
        hours / 24,
        (hours % 24) as u8,
        ((hms >> 6) % 64) as u8,
        (hms % 64) as u8,
        (abs % (1 << 24)) as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_windows_1252() {
        assert_eq!(latin1_to_utf8(b"caf\xe9"), "café".as_bytes());
        assert_eq!(latin1_to_utf8(b"\x80"), "€".as_bytes());
    }

    #[test]
    fn timestamps_are_utc_date_times() {
        assert_eq!(timestamp(1, 0), Value::Date(1970, 1, 1, 0, 0, 1, 0));
        assert_eq!(timestamp(2_147_483_647, 999_999), Value::Date(2038, 1, 19, 3, 14, 7, 999_999));
        assert_eq!(timestamp(1_709_208_000, 500_000), Value::Date(2024, 2, 29, 12, 0, 0, 500_000));
        assert_eq!(timestamp(0, 0), Value::Date(0, 0, 0, 0, 0, 0, 0));
    }

    #[test]
    fn negative_times_with_short_fractions() {
        // -00:00:00.5 as TIME(1): int part -1 (0x7FFFFF), fraction byte 0x100 - 50.
        assert_eq!(time2(&[0x7F, 0xFF, 0xFF, 0xCE], 1), Some(Value::Time(true, 0, 0, 0, 0, 500_000)));
        assert_eq!(time2(&[0x80, 0x00, 0x00, 0x32], 1), Some(Value::Time(false, 0, 0, 0, 0, 500_000)));
    }

    #[test]
    fn charsets_by_collation_id() {
        assert_eq!(Charset::of(63), Charset::Binary);
        assert_eq!(Charset::of(8), Charset::Latin1);
        assert_eq!(Charset::of(1032), Charset::Latin1, "MariaDB's latin1_swedish_nopad_ci");
        assert_eq!(Charset::of(45), Charset::Utf8);
        assert_eq!(Charset::of(2304 + 1), Charset::Utf8, "MariaDB 11's utf8mb4_uca1400_*");
        assert_eq!(Charset::of(28), Charset::Other(encoding_rs::GBK));
        assert_eq!(Charset::of(28).to_utf8(&[0xD6, 0xD0]), Some("中".as_bytes().to_vec()));
        assert_eq!(Charset::of(28).to_utf8(b"abc"), None);
    }
}
