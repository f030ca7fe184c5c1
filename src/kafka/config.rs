//! Kafka client properties: a `client.properties` file, and secrets kept
//! out of logs, errors and `Debug` output.
//!
//! The file has the format of the Java client's `client.properties`
//! (`key=value`, `key: value` or `key value`; `#` and `!` comments; a
//! trailing `\` continues a line; `\t`, `\n`, `\r`, `\f`, `\uXXXX` and
//! `\<char>` escapes). Keys are librdkafka properties. A key prefixed
//! `consumer.` applies to the consumer only, one prefixed `producer.` to
//! the producers only (the prefix is removed); any other key applies to
//! both. No librdkafka property starts with either prefix.
//!
//! A property is secret when its name holds `password` or `secret`, or it
//! is a private key or a free-form login setting (`ssl.key.pem`,
//! `sasl.oauthbearer.config`). Secret values are shown as `[redacted]`
//! wherever weir prints a property: in [`Properties`]' `Debug` (and so in
//! `KafkaSettings`'), in configuration errors from librdkafka
//! ([`client_error`]) and in weir's own messages.

use std::fmt;
use std::path::Path;

use rdkafka::error::KafkaError;

use crate::{Error, Result};

/// What weir prints instead of a secret value.
pub const REDACTED: &str = "[redacted]";

/// Whether the value of property `key` must never be printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || matches!(
            key.as_str(),
            "ssl.key.pem" | "ssl_key" | "sasl.oauthbearer.config"
        )
}

/// `value`, or [`REDACTED`] when `key` is secret.
pub fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) { REDACTED } else { value }
}

/// Librdkafka properties for the consumer and the producers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// For both clients.
    pub client: Vec<(String, String)>,
    /// For the consumer only.
    pub consumer: Vec<(String, String)>,
    /// For the producers only.
    pub producer: Vec<(String, String)>,
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Properties")
            .field("client", &Redacted(&self.client))
            .field("consumer", &Redacted(&self.consumer))
            .field("producer", &Redacted(&self.producer))
            .finish()
    }
}

/// Properties shown with their secret values redacted.
struct Redacted<'a>(&'a [(String, String)]);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, shown(k, v))))
            .finish()
    }
}

impl Properties {
    /// Reads a `client.properties` file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            what: format!("reading Kafka properties {}", path.display()),
            source: e,
        })?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Adds `other`'s properties after these (later ones win).
    pub fn extend(&mut self, other: Properties) {
        self.client.extend(other.client);
        self.consumer.extend(other.consumer);
        self.producer.extend(other.producer);
    }

    /// What the consumer gets, in order: the shared properties, then its own.
    pub fn for_consumer(&self) -> impl Iterator<Item = &(String, String)> {
        self.client.iter().chain(&self.consumer)
    }

    /// What the producers get, in order: the shared properties, then theirs.
    pub fn for_producer(&self) -> impl Iterator<Item = &(String, String)> {
        self.client.iter().chain(&self.producer)
    }

    /// Parses the text of a `client.properties` file.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut props = Self::default();
        for (line_no, logical) in logical_lines(text) {
            let (key, value) = split_pair(&logical);
            let key = unescape(key);
            let value = unescape(value);
            if key.is_empty() {
                return Err(format!("line {line_no}: a property with no name"));
            }
            let (list, name) = if let Some(name) = key.strip_prefix("consumer.") {
                (&mut props.consumer, name.to_string())
            } else if let Some(name) = key.strip_prefix("producer.") {
                (&mut props.producer, name.to_string())
            } else {
                (&mut props.client, key.clone())
            };
            if name.is_empty() {
                return Err(format!("line {line_no}: {key} names no property"));
            }
            list.push((name, value));
        }
        Ok(props)
    }
}

/// The file's logical lines (continuations joined, comments and blank
/// lines dropped), each with the number of its first physical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let continuing = current.is_some();
        if !continuing && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            // An odd number of trailing backslashes continues the line.
            Some(body) if (line.len() - line.trim_end_matches('\\').len()) % 2 == 1 => (body, true),
            _ => (line, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push_str(body);
        if !continues {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// Splits at the first unescaped `=`, `:` or whitespace (and the
/// separator's surrounding whitespace).
fn split_pair(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' | b' ' | b'\t' => break,
            _ => i += 1,
        }
    }
    let key = &line[..i.min(line.len())];
    let mut rest = line[i.min(line.len())..].trim_start_matches([' ', '\t']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t']);
    }
    (key, rest)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A librdkafka error as text, with the value of a secret property
/// redacted (librdkafka's configuration errors repeat the value).
pub fn client_error(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            let desc = if value.is_empty() || !is_secret(key) {
                desc.clone()
            } else {
                desc.replace(value.as_str(), REDACTED)
            };
            format!(
                "Kafka property {key}={}: {desc}",
                shown(key, value.as_str())
            )
        }
        other => other.to_string(),
    }
}

/// Whether a client error reported while connecting means the settings
/// can never work (TLS that fails to verify, a failed login, plaintext
/// spoken to a TLS listener), so a worker should stop at once with it
/// rather than retry in silence.
pub fn is_settings_error(error: &KafkaError, reason: &str) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let code = match error {
        KafkaError::Global(code) => *code,
        _ => return false,
    };
    match code {
        Code::SSL | Code::Authentication | Code::UnsupportedSASLMechanism => true,
        // librdkafka's own diagnosis of a security.protocol mismatch.
        Code::BrokerTransportFailure | Code::AllBrokersDown => {
            reason.contains("security.protocol") || reason.contains("SSL handshake")
        }
        _ => false,
    }
}

/// Consecutive connections closed by the broker during the first request
/// after which the settings are taken not to work.
const CLOSED_DURING_FIRST_REQUEST: u32 = 3;

/// Watches a client's log for what its error events do not say: a broker
/// that closes every connection during the first request (the API version
/// query), as a TLS listener does with a client speaking plaintext. A
/// broker that is down refuses connections instead, and one that answers
/// resets the count.
#[derive(Debug, Default)]
pub struct ConnectWatch {
    closed_in_first_request: std::sync::atomic::AtomicU32,
}

impl ConnectWatch {
    /// Looks at one librdkafka log line (`fac` is its facility); returns
    /// the settings error once the pattern is clear.
    pub fn observe(&self, fac: &str, message: &str) -> Option<String> {
        use std::sync::atomic::Ordering;
        if fac != "FAIL" {
            return None;
        }
        if message.contains("Disconnected") && message.contains("in state APIVERSION_QUERY") {
            // librdkafka logs a repeated error once, then counts the
            // repeats it did not log in its next line.
            let repeats = message
                .split_once(" identical error(s) suppressed")
                .and_then(|(head, _)| head.rsplit(' ').next()?.parse::<u32>().ok())
                .unwrap_or(0);
            let seen = 1 + repeats;
            let n = self
                .closed_in_first_request
                .fetch_add(seen, Ordering::Relaxed)
                + seen;
            if n >= CLOSED_DURING_FIRST_REQUEST {
                return Some(format!(
                    "the broker closed {n} connections during the first request ({message}): \
                     is security.protocol right (plaintext spoken to a TLS listener)?"
                ));
            }
        } else {
            self.closed_in_first_request.store(0, Ordering::Relaxed);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn java_properties_with_client_prefixes() {
        let text = "# a comment\n! another\n\nsecurity.protocol=SASL_SSL\n  sasl.mechanism : SCRAM-SHA-512\nsasl.username alice\nsasl.password=p\\=a\\:s s\\\n    word\nconsumer.fetch.max.bytes=1048576\nproducer.compression.type=zstd\nssl.ca.location=/etc/ssl/ca\\u0041.pem\n";
        let p = Properties::parse(text).expect("parses");
        assert_eq!(
            p.client,
            pairs(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "alice"),
                ("sasl.password", "p=a:s sword"),
                ("ssl.ca.location", "/etc/ssl/caA.pem"),
            ])
        );
        assert_eq!(p.consumer, pairs(&[("fetch.max.bytes", "1048576")]));
        assert_eq!(p.producer, pairs(&[("compression.type", "zstd")]));
        assert!(Properties::parse("=x").unwrap_err().contains("line 1"));
        assert!(
            Properties::parse("a=1\nconsumer.=2")
                .unwrap_err()
                .contains("line 2")
        );
    }

    #[test]
    fn secrets_never_show() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
            "My.Custom.Secret",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret(key), "{key}");
        }
        let p = Properties {
            client: pairs(&[("sasl.username", "alice"), ("sasl.password", "hunter2")]),
            ..Properties::default()
        };
        let shown = format!("{p:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"hunter2\" for configuration property \"sasl.password\"".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let text = client_error(&e);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("sasl.password=[redacted]"), "{text}");
    }

    #[test]
    fn librdkafka_has_tls_sasl_and_every_codec() {
        use rdkafka::config::ClientConfig;
        use rdkafka::producer::BaseProducer;
        let logins = [
            ("SCRAM-SHA-256", None),
            ("SCRAM-SHA-512", None),
            ("PLAIN", None),
            ("OAUTHBEARER", Some("principal=weir")),
        ];
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            for (mechanism, oauth) in logins {
                let mut config = ClientConfig::new();
                config
                    .set("bootstrap.servers", "127.0.0.1:1")
                    .set("compression.type", codec)
                    .set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanism", mechanism)
                    .set("sasl.username", "weir")
                    .set("sasl.password", "not-used");
                if let Some(c) = oauth {
                    config
                        .set("enable.sasl.oauthbearer.unsecure.jwt", "true")
                        .set("sasl.oauthbearer.config", c);
                }
                let created: std::result::Result<BaseProducer, _> = config.create();
                if let Err(e) = created {
                    panic!("{codec} with SASL_SSL/{mechanism}: {}", client_error(&e));
                }
            }
        }
    }

    #[test]
    fn connections_closed_in_the_first_request_are_a_settings_error() {
        let watch = ConnectWatch::default();
        let closed = "127.0.0.1:9093/bootstrap: Disconnected: connection reset by peer (after 2ms in state APIVERSION_QUERY)";
        assert_eq!(watch.observe("FAIL", closed), None);
        assert_eq!(
            watch.observe(
                "FAIL",
                "Connect to ipv4#127.0.0.1:9093 failed: Connection refused"
            ),
            None
        );
        assert_eq!(watch.observe("FAIL", closed), None);
        assert_eq!(
            watch.observe("FAIL", closed),
            None,
            "reset by the refusal in between"
        );
        assert_eq!(
            watch.observe("CONNECT", closed),
            None,
            "other facilities do not count"
        );
        let why = watch.observe("FAIL", closed).expect("three in a row");
        assert!(why.contains("security.protocol"), "{why}");
        let watch = ConnectWatch::default();
        assert_eq!(watch.observe("FAIL", closed), None);
        let repeated = "127.0.0.1:9093/bootstrap: Disconnected: connection reset by peer (after 4ms in state APIVERSION_QUERY, 1 identical error(s) suppressed)";
        assert!(
            watch.observe("FAIL", repeated).is_some(),
            "one logged, one suppressed, one logged: three"
        );
    }
}
