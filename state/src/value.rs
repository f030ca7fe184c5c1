//! Versioned state values: a layout byte, the processor's state version,
//! then serde + bincode 2. See [`crate::layout::STATE_FORMAT_VERSION`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::layout::{STATE_FORMAT_TTL, STATE_FORMAT_V1, STATE_FORMAT_VERSION};
use crate::{Error, Result};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A stored state value, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored<'a> {
    /// The processor's state version it was written under.
    pub version: u32,
    /// When it was written, in its time-to-live's domain (only for a
    /// processor whose state has one).
    pub written_at: Option<i64>,
    /// The bincode body.
    pub body: &'a [u8],
}

/// Encodes `value` into `out` (cleared first) as state version `version`,
/// written at `written_at` when the state has a time to live. Returns the
/// length of the header before the bincode body.
pub fn encode_state<T: Serialize>(
    value: &T,
    version: u32,
    written_at: Option<i64>,
    out: &mut Vec<u8>,
) -> Result<usize> {
    out.clear();
    match (version, written_at) {
        // Version 1 without a time to live: the first layout, which the
        // releases before state versions read too (so an upgrade to this
        // one can be rolled back while the version stays 1).
        (1, None) => out.push(STATE_FORMAT_V1),
        (_, None) => out.push(STATE_FORMAT_VERSION),
        (_, Some(_)) => out.push(STATE_FORMAT_TTL),
    }
    if out[0] != STATE_FORMAT_V1 {
        out.extend_from_slice(&version.to_le_bytes());
    }
    if let Some(at) = written_at {
        out.extend_from_slice(&at.to_le_bytes());
    }
    let header = out.len();
    bincode::serde::encode_into_std_write(value, out, config())
        .map_err(|e| Error::ValueEncode(e.to_string()))?;
    Ok(header)
}

/// Splits a stored value into its state version, write time and body. A
/// value in the first layout (no version) is state version 1.
pub fn split_state(bytes: &[u8]) -> Result<Stored<'_>> {
    let short = || Error::ValueDecode("value too short for its header".into());
    let (&layout, rest) = bytes
        .split_first()
        .ok_or_else(|| Error::ValueDecode("empty value".into()))?;
    let (version, rest) = match layout {
        STATE_FORMAT_V1 => {
            return Ok(Stored {
                version: 1,
                written_at: None,
                body: rest,
            });
        }
        STATE_FORMAT_VERSION | STATE_FORMAT_TTL => {
            let (v, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
            (u32::from_le_bytes(*v), rest)
        }
        found => {
            return Err(Error::Version {
                found,
                expected: STATE_FORMAT_VERSION,
            });
        }
    };
    let (written_at, body) = if layout == STATE_FORMAT_TTL {
        let (at, body) = rest.split_first_chunk::<8>().ok_or_else(short)?;
        (Some(i64::from_le_bytes(*at)), body)
    } else {
        (None, rest)
    };
    Ok(Stored {
        version,
        written_at,
        body,
    })
}

/// Decodes the bincode body of a state value (as [`split_state`] returns
/// it) into `T`: what a migration calls with its old type.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let (value, read) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| Error::ValueDecode(e.to_string()))?;
    if read != body.len() {
        return Err(Error::ValueDecode(format!(
            "{} trailing bytes after value",
            body.len() - read
        )));
    }
    Ok(value)
}

/// Encodes `value` as state version 1 (for values whose version does not
/// matter: copies kept in memory).
pub fn encode_value<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    encode_state(value, 1, None, out).map(|_| ())
}

/// Decodes a value written by [`encode_value`] (or [`encode_state`] with
/// any version).
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode_body(split_state(bytes)?.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_version_check() {
        let mut buf = Vec::new();
        encode_value(&(1u32, "x".to_string(), vec![3i64]), &mut buf).expect("encodes");
        let back: (u32, String, Vec<i64>) = decode_value(&buf).expect("decodes");
        assert_eq!(back, (1, "x".to_string(), vec![3]));
        buf[0] = 99;
        assert!(matches!(
            decode_value::<(u32, String, Vec<i64>)>(&buf),
            Err(Error::Version { found: 99, .. })
        ));
        assert!(decode_value::<u32>(&[]).is_err());
    }

    #[test]
    fn state_versions_and_the_first_layout() {
        let mut buf = Vec::new();
        assert_eq!(encode_state(&7u64, 3, None, &mut buf).expect("encodes"), 5);
        let s = split_state(&buf).expect("splits");
        assert_eq!((s.version, s.written_at), (3, None));
        assert_eq!(decode_body::<u64>(s.body).expect("decodes"), 7);
        assert_eq!(
            encode_state(&7u64, 3, Some(-9), &mut buf).expect("encodes"),
            13
        );
        let s = split_state(&buf).expect("splits");
        assert_eq!((s.version, s.written_at), (3, Some(-9)));
        assert_eq!(decode_body::<u64>(s.body).expect("decodes"), 7);
        // A value written before state versions: layout 1, bincode alone;
        // version 1 without a time to live is still written that way.
        let mut old = vec![STATE_FORMAT_V1];
        bincode::serde::encode_into_std_write(7u64, &mut old, config()).expect("encodes");
        assert_eq!(encode_state(&7u64, 1, None, &mut buf).expect("encodes"), 1);
        assert_eq!(buf, old);
        let s = split_state(&old).expect("splits");
        assert_eq!(
            (s.version, decode_body::<u64>(s.body).expect("decodes")),
            (1, 7)
        );
        assert!(
            split_state(&[STATE_FORMAT_VERSION, 1]).is_err(),
            "too short"
        );
        assert!(
            split_state(&[STATE_FORMAT_TTL, 1, 0, 0, 0, 1]).is_err(),
            "too short"
        );
    }
}
