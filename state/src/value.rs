//! Versioned state values: a layout byte, the processor's state version,
//! then serde + bincode 2. See [`crate::layout::STATE_FORMAT_VERSION`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::layout::{STATE_FORMAT_V1, STATE_FORMAT_VERSION};
use crate::{Error, Result};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` into `out` (cleared first) as state version `version`.
pub fn encode_state<T: Serialize>(value: &T, version: u32, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.push(STATE_FORMAT_VERSION);
    out.extend_from_slice(&version.to_le_bytes());
    bincode::serde::encode_into_std_write(value, out, config())
        .map_err(|e| Error::ValueEncode(e.to_string()))?;
    Ok(())
}

/// The state version of a stored value and its bincode body. A value in
/// the first layout (no version) is state version 1.
pub fn split_state(bytes: &[u8]) -> Result<(u32, &[u8])> {
    match bytes.split_first() {
        None => Err(Error::ValueDecode("empty value".into())),
        Some((&STATE_FORMAT_V1, body)) => Ok((1, body)),
        Some((&STATE_FORMAT_VERSION, rest)) if rest.len() >= 4 => {
            let (version, body) = rest.split_at(4);
            let version = u32::from_le_bytes(version.try_into().expect("four bytes"));
            Ok((version, body))
        }
        Some((&STATE_FORMAT_VERSION, _)) => Err(Error::ValueDecode(
            "value too short for its state version".into(),
        )),
        Some((&found, _)) => Err(Error::Version {
            found,
            expected: STATE_FORMAT_VERSION,
        }),
    }
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
    encode_state(value, 1, out)
}

/// Decodes a value written by [`encode_value`] (or [`encode_state`] with
/// any version).
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode_body(split_state(bytes)?.1)
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
        encode_state(&7u64, 3, &mut buf).expect("encodes");
        let (version, body) = split_state(&buf).expect("splits");
        assert_eq!(version, 3);
        assert_eq!(decode_body::<u64>(body).expect("decodes"), 7);
        // A value written before state versions: layout 1, bincode alone.
        let mut old = vec![STATE_FORMAT_V1];
        bincode::serde::encode_into_std_write(7u64, &mut old, config()).expect("encodes");
        let (version, body) = split_state(&old).expect("splits");
        assert_eq!(
            (version, decode_body::<u64>(body).expect("decodes")),
            (1, 7)
        );
        assert!(
            split_state(&[STATE_FORMAT_VERSION, 1]).is_err(),
            "too short"
        );
    }
}
