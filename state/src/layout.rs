//! The persistent layout: every prefix and format version in one file.
//!
//! A partition's RocksDB instance holds one keyspace split by a leading byte:
//! - `s` + key encoding → versioned state value ([`crate::value`]);
//! - `t` + domain byte + time (i64 codec) + key encoding + name (bytes codec)
//!   → empty: the timer queue, in firing order per domain;
//! - `m` + name → metadata (positions, watermark: used by checkpoints).
//!
//! These bytes are a format. Never change them silently: bump
//! [`STATE_FORMAT_VERSION`] and teach the reader the old layout.

use crate::codec::{KeyCodec, decode_bytes, encode_bytes};
use crate::{Error, Result};

/// Version byte written in front of every state value: the layout of the
/// value. 1: bincode alone (state version 1: every value written before
/// state versions, and those of a processor still at version 1). 2: the
/// processor's state version (u32, little endian), then bincode.
pub const STATE_FORMAT_VERSION: u8 = 2;

/// The first value layout, still read.
pub const STATE_FORMAT_V1: u8 = 1;

/// The layout of a value whose processor gives its state a time to live:
/// the state version (u32, little endian), when it was written (i64, little
/// endian, in the TTL's time domain), then bincode.
pub const STATE_FORMAT_TTL: u8 = 3;

/// Prefix of the per-key state records.
pub const STATE_PREFIX: u8 = b's';
/// Prefix of the timer records.
pub const TIMER_PREFIX: u8 = b't';
/// Prefix of partition metadata.
pub const META_PREFIX: u8 = b'm';

/// Meta key: the input position (next byte or offset to read) of the last
/// checkpoint, u64 big-endian.
pub const META_POSITION: &[u8] = b"position";
/// Meta key: the watermark at the last checkpoint, i64 big-endian.
pub const META_WATERMARK: &[u8] = b"watermark";
/// Meta key: the largest event time seen at the last checkpoint, i64
/// big-endian (absent when none was seen).
pub const META_MAX_SEEN: &[u8] = b"max_seen";

/// Meta key: the shape of the partition's keys ([`crate::KeyShape`], as
/// text), written at each checkpoint when the key type gives one; re-sharding
/// reads it.
pub const META_KEY_SHAPE: &[u8] = b"key_shape";

/// Writes the storage key of a timer into `out` (cleared first), without the
/// space prefix: stores add it.
pub fn timer_key(domain: u8, at: i64, key: &[u8], name: &str, out: &mut Vec<u8>) {
    out.clear();
    out.push(domain);
    at.encode_key(out);
    out.extend_from_slice(key);
    encode_bytes(name.as_bytes(), out);
}

/// Parses a timer storage key written by [`timer_key`], decoding the key
/// with its own codec.
pub fn parse_timer_key<K: KeyCodec>(bytes: &[u8]) -> Result<(u8, i64, K, String)> {
    let mut input = bytes;
    let domain = u8::decode_key(&mut input)?;
    let at = i64::decode_key(&mut input)?;
    let key = K::decode_key(&mut input)?;
    let name = String::from_utf8(decode_bytes(&mut input)?)
        .map_err(|e| Error::KeyDecode(format!("timer name is not UTF-8: {e}")))?;
    if !input.is_empty() {
        return Err(Error::KeyDecode(format!(
            "{} trailing bytes after timer key",
            input.len()
        )));
    }
    Ok((domain, at, key, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_roundtrip_and_sort_by_time() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        timer_key(0, -5, &"zz".to_string().to_key_bytes(), "close", &mut a);
        timer_key(0, 7, &"aa".to_string().to_key_bytes(), "close", &mut b);
        assert!(a < b, "earlier timers sort first whatever the key");
        let (d, at, k, n) = parse_timer_key::<String>(&a).expect("parses");
        assert_eq!((d, at, k.as_str(), n.as_str()), (0, -5, "zz", "close"));
    }
}
