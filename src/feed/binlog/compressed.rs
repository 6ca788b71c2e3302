//! MariaDB's compressed binlog events (`log_bin_compress=ON`): `QUERY_COMPRESSED_EVENT` (165) and the
//! compressed rows events (166-171). `mysql_common` does not know them, so they would pass unseen.
//!
//! MariaDB compresses only the variable part: a rows event's row data after the column bitmaps, a query
//! event's statement text. That part starts with one header byte `0x80 | n` (top three bits `100`),
//! then the uncompressed length in `n` big-endian bytes, then a zlib stream. A compressed rows event is
//! turned back into the plain rows event it stands for (same header, post-header and bitmaps, the row
//! data inflated), so it is decoded by exactly the same code as an uncompressed one.

use super::shape::DecodeError;
use mysql_async::binlog::events::Event;
use mysql_async::binlog::EventType;
use std::io::Read;

pub const QUERY_COMPRESSED_EVENT: u8 = 165;

/// Row data larger than this after inflating is refused rather than allocated (max_allowed_packet is 1 GiB).
const MAX_INFLATED: usize = 1 << 30;

/// Whether `t` is one of MariaDB's compressed rows events.
pub fn is_compressed_rows(t: u8) -> bool {
    (166..=171).contains(&t)
}

/// The plain event type a compressed rows event stands for.
fn plain_type(t: u8) -> Option<EventType> {
    Some(match t {
        166 => EventType::WRITE_ROWS_EVENT_V1,
        167 => EventType::UPDATE_ROWS_EVENT_V1,
        168 => EventType::DELETE_ROWS_EVENT_V1,
        169 => EventType::WRITE_ROWS_EVENT,
        170 => EventType::UPDATE_ROWS_EVENT,
        171 => EventType::DELETE_ROWS_EVENT,
        _ => return None,
    })
}

fn bad(what: &'static str, detail: impl Into<String>) -> DecodeError {
    DecodeError::Event { what, source: std::io::Error::new(std::io::ErrorKind::InvalidData, detail.into()) }
}

/// Inflates one compressed block (header byte, length, zlib stream).
pub fn inflate(block: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let what = "a compressed binlog event";
    let first = *block.first().ok_or_else(|| bad(what, "empty compressed block"))?;
    if first & 0xe0 != 0x80 {
        return Err(bad(what, format!("unknown compression header byte {first:#04x}")));
    }
    let n = usize::from(first & 0x07);
    let len_bytes = block.get(1..1 + n).ok_or_else(|| bad(what, "truncated compressed length"))?;
    let len = len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    if len > MAX_INFLATED {
        return Err(bad(what, format!("inflated size {len} is over the 1 GiB limit")));
    }
    let mut out = Vec::with_capacity(len);
    flate2::read::ZlibDecoder::new(&block[1 + n..])
        .take(len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Event { what, source: e })?;
    if out.len() != len {
        return Err(bad(what, format!("inflated {} bytes, the header says {len}", out.len())));
    }
    Ok(out)
}

/// Reads a length-encoded integer (the column count of a rows event): (value, bytes used).
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let le =
        |n: usize| -> Option<u64> { Some(b.get(1..1 + n)?.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x))) };
    Some(match first {
        0..=250 => (u64::from(first), 1),
        252 => (le(2)?, 3),
        253 => (le(3)?, 4),
        254 => (le(8)?, 9),
        _ => return None,
    })
}

/// The plain rows event a compressed one stands for.
pub fn rows_event(event: &Event) -> Result<Event, DecodeError> {
    let what = "a compressed rows event";
    let header = event.header();
    let t = header.event_type_raw();
    let plain = plain_type(t).ok_or_else(|| bad(what, format!("event type {t} is not a compressed rows event")))?;
    let data = event.data();
    let fde = event.fde();
    let post = usize::from(fde.get_event_type_header_length(plain));
    let mut at = post;
    if post == usize::from(fde.get_event_type_header_length(EventType::WRITE_ROWS_EVENT)) && post >= 10 {
        // Version 2 rows events: a variable extra-data part whose length counts its own two bytes.
        let extra = data.get(post - 2..post).ok_or_else(|| bad(what, "truncated post-header"))?;
        at += usize::from(u16::from_le_bytes([extra[0], extra[1]])).saturating_sub(2);
    }
    let (columns, used) = data.get(at..).and_then(lenenc).ok_or_else(|| bad(what, "truncated column count"))?;
    at += used;
    let bitmap = usize::try_from(columns.div_ceil(8)).map_err(|_| bad(what, "column count too large"))?;
    let is_update = matches!(plain, EventType::UPDATE_ROWS_EVENT_V1 | EventType::UPDATE_ROWS_EVENT);
    at += if is_update { 2 * bitmap } else { bitmap };
    let block = data.get(at..).ok_or_else(|| bad(what, "truncated column bitmaps"))?;
    let rows = inflate(block)?;

    let mut body = data[..at].to_vec();
    body.extend_from_slice(&rows);
    let checksum = event.checksum();
    let size = 19 + body.len() + checksum.map_or(0, |c| c.len());
    let size = u32::try_from(size).map_err(|_| bad(what, "inflated event over 4 GiB"))?;
    let mut raw = Vec::with_capacity(size as usize);
    raw.extend_from_slice(&header.timestamp().to_le_bytes());
    raw.push(plain as u8);
    raw.extend_from_slice(&header.server_id().to_le_bytes());
    raw.extend_from_slice(&size.to_le_bytes());
    raw.extend_from_slice(&header.log_pos().to_le_bytes());
    raw.extend_from_slice(&header.flags_raw().to_le_bytes());
    raw.extend_from_slice(&body);
    if let Some(c) = checksum {
        // Not verified again: the stream verified the compressed event's own checksum.
        raw.extend_from_slice(&c);
    }
    Event::read(fde, &raw[..]).map_err(|e| DecodeError::Event { what, source: e })
}

/// A compressed query event's default schema and statement text.
pub fn query(event: &Event) -> Result<(String, String), DecodeError> {
    let what = "a compressed query event";
    let d = event.data();
    // Post-header: thread id (4), exec time (4), schema length (1), error code (2), status length (2).
    let schema_len = usize::from(*d.get(8).ok_or_else(|| bad(what, "truncated post-header"))?);
    let status_len = usize::from(u16::from_le_bytes([
        *d.get(11).ok_or_else(|| bad(what, "truncated post-header"))?,
        *d.get(12).ok_or_else(|| bad(what, "truncated post-header"))?,
    ]));
    let post = usize::from(event.fde().get_event_type_header_length(EventType::QUERY_EVENT)).max(13);
    let schema_at = post + status_len;
    let schema = d.get(schema_at..schema_at + schema_len).ok_or_else(|| bad(what, "truncated schema"))?;
    let text = d.get(schema_at + schema_len + 1..).ok_or_else(|| bad(what, "truncated statement"))?;
    let text = inflate(text)?;
    Ok((String::from_utf8_lossy(schema).into_owned(), String::from_utf8_lossy(&text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn block(payload: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(payload).unwrap();
        let compressed = z.finish().unwrap();
        let mut b = vec![0x80 | 2, (payload.len() >> 8) as u8, payload.len() as u8];
        b.extend(compressed);
        b
    }

    #[test]
    fn inflates_mariadb_blocks() {
        let text = b"ALTER TABLE t ADD COLUMN c INT".repeat(20);
        assert_eq!(inflate(&block(&text)).unwrap(), text);
    }

    #[test]
    fn refuses_damaged_blocks_without_panicking() {
        let good = block(b"hello world hello world");
        assert!(inflate(&[]).is_err());
        assert!(inflate(&[0x00, 1, 2]).is_err(), "header byte without the compression bits");
        assert!(inflate(&good[..2]).is_err(), "truncated length");
        assert!(inflate(&good[..good.len() - 3]).is_err(), "truncated stream");
        let mut wrong_len = good.clone();
        wrong_len[2] ^= 1;
        assert!(inflate(&wrong_len).is_err(), "length that does not match");
    }

    #[test]
    fn length_encoded_counts() {
        assert_eq!(lenenc(&[5]), Some((5, 1)));
        assert_eq!(lenenc(&[252, 0x10, 0x01]), Some((0x110, 3)));
        assert_eq!(lenenc(&[252, 0x10]), None);
    }
}
