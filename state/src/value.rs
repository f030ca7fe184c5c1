//! Versioned state values: one version byte, then serde + bincode 2.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::layout::STATE_FORMAT_VERSION;
use crate::{Error, Result};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` into `out` (cleared first) under the current version.
pub fn encode_value<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.push(STATE_FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, out, config())
        .map_err(|e| Error::ValueEncode(e.to_string()))?;
    Ok(())
}

/// Decodes a value written by [`encode_value`].
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| Error::ValueDecode("empty value".into()))?;
    if version != STATE_FORMAT_VERSION {
        return Err(Error::Version {
            found: version,
            expected: STATE_FORMAT_VERSION,
        });
    }
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
}
