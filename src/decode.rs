//! Decoders that ship with weir: JSON lines into any
//! `serde::Deserialize` type, and CEF lines; the job picks the key and the
//! event time of each record.
//!
//! ```
//! use weir::decode::Json;
//! use weir::Decode;
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct Click { user: String, ts: i64 }
//!
//! let d = Json::new(|c: &Click| Some(c.user.clone()), |c: &Click| Some(c.ts));
//! let r = d.decode(br#"{"user":"u1","ts":1000}"#).unwrap();
//! assert_eq!((r.key.as_str(), r.timestamp), ("u1", Some(1000)));
//! assert!(d.decode(b"{").unwrap_err().contains("not JSON"));
//! ```

use serde::de::DeserializeOwned;

use crate::cef;
use crate::runtime::{Decode, Decoded};

/// The key of a record (`None`: it has none, and is dead-lettered).
type KeyFn<T, K> = Box<dyn Fn(&T) -> Option<K> + Send + Sync>;
/// The event time of a record, ms since the epoch (`None`: none; the
/// record follows the partition's watermark without moving it).
type TimeFn<T> = Box<dyn Fn(&T) -> Option<i64> + Send + Sync>;

/// JSON lines into `T`: a line that is not JSON, not a `T`, or has no key
/// is dead-lettered with the reason.
pub struct Json<T, K> {
    key: KeyFn<T, K>,
    time: TimeFn<T>,
}

impl<T, K> Json<T, K> {
    /// Decodes each line as a `T`, keyed by `key`, at the event time
    /// `time` gives.
    pub fn new(
        key: impl Fn(&T) -> Option<K> + Send + Sync + 'static,
        time: impl Fn(&T) -> Option<i64> + Send + Sync + 'static,
    ) -> Self {
        Self {
            key: Box::new(key),
            time: Box::new(time),
        }
    }
}

impl<T, K> Decode<K, T> for Json<T, K>
where
    T: DeserializeOwned + 'static,
    K: 'static,
{
    fn decode(&self, line: &[u8]) -> Result<Decoded<K, T>, String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let value: T = serde_json::from_slice(line).map_err(|e| {
            if e.is_data() {
                format!("not the expected record: {e}")
            } else {
                format!("not JSON: {e}")
            }
        })?;
        let key = (self.key)(&value).ok_or("the record has no key")?;
        Ok(Decoded {
            key,
            timestamp: (self.time)(&value),
            value,
        })
    }
}

/// What a job takes from one CEF event: its record, or why there is none.
type CefFn<K, V> = Box<dyn Fn(&cef::Event<'_>) -> Result<Decoded<K, V>, String> + Send + Sync>;

/// CEF lines (see [`cef`]): a line that is not CEF is dead-lettered with
/// the parser's reason; `pick` makes the record of an event (key, event
/// time, value) or says why it cannot.
pub struct Cef<K, V> {
    pick: CefFn<K, V>,
}

impl<K, V> Cef<K, V> {
    pub fn new(
        pick: impl Fn(&cef::Event<'_>) -> Result<Decoded<K, V>, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            pick: Box::new(pick),
        }
    }
}

impl<K: 'static, V: 'static> Decode<K, V> for Cef<K, V> {
    fn decode(&self, line: &[u8]) -> Result<Decoded<K, V>, String> {
        let event = cef::decode_bytes(line).map_err(|e| e.to_string())?;
        (self.pick)(&event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Click {
        user: Option<String>,
        ts: i64,
    }

    #[test]
    fn json_errors_say_what_was_wrong() {
        let d = Json::new(|c: &Click| c.user.clone(), |c: &Click| Some(c.ts));
        let ok = d.decode(b"{\"user\":\"a\",\"ts\":5}\r").expect("decodes");
        assert_eq!((ok.key, ok.timestamp), ("a".to_string(), Some(5)));
        assert!(d.decode(b"nope").unwrap_err().starts_with("not JSON"));
        let wrong = d.decode(b"{\"user\":\"a\",\"ts\":\"x\"}").unwrap_err();
        assert!(wrong.starts_with("not the expected record"), "{wrong}");
        assert_eq!(
            d.decode(b"{\"ts\":1}").unwrap_err(),
            "the record has no key"
        );
    }

    #[test]
    fn cef_lines_give_the_picked_record() {
        let d = Cef::new(|e: &cef::Event<'_>| {
            let src = e.get("src").ok_or("no src")?;
            Ok(Decoded {
                key: src.to_string(),
                timestamp: None,
                value: e.signature_id.to_string(),
            })
        });
        let r = d
            .decode(b"CEF:0|V|P|1|100|Login|5|src=10.0.0.1")
            .expect("decodes");
        assert_eq!((r.key.as_str(), r.value.as_str()), ("10.0.0.1", "100"));
        assert_eq!(
            d.decode(b"CEF:0|V|P|1|100|Login|5|dst=1").unwrap_err(),
            "no src"
        );
        assert!(d.decode(b"not cef").is_err());
    }
}
