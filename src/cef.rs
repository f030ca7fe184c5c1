//! ArcSight CEF decoding, with no per-field allocation where a borrowed
//! slice will do.
//!
//! A line is `[syslog prefix ]CEF:Version|Device Vendor|Device Product|Device
//! Version|Signature ID|Name|Severity|Extension`. Header fields are split on
//! unescaped `|` and unescape `\|` and `\\`. The extension is `key=value`
//! pairs separated by whitespace (spaces or tabs); a value runs up to the
//! whitespace before the next `key=` (so values may hold spaces and `|`),
//! and unescapes `\=`, `\\`, `\n` and `\r`. A `=` preceded by `\` or by
//! whitespace is part of a value, not a new key. Fields borrow from the line
//! unless an escape had to be removed.
//!
//! Where the widely used decoders (Logstash's CEF codec, Filebeat's
//! `decode_cef`, the Elasticsearch CEF processor) agree, weir agrees with
//! them: whitespace (spaces, tabs, CR, LF) after the last extension value is
//! not part of it, and a tab before the next `key=` separates pairs like a
//! space. Where they disagree weir picks one answer: an unknown escape in an
//! extension value (`\|`, `\t`, `\x`) is kept as written, backslash
//! included, as Logstash does (Filebeat and Elasticsearch reject the line);
//! keeping it loses nothing and no event is dropped for it. Header fields
//! unescape `\|` and `\\` as the format defines. Input that is not UTF-8 is
//! an error ([`decode_bytes`]), never replaced.
//!
//! ```
//! let line = r"<13>Nov 22 10:00:00 fw1 CEF:0|Acme|FW|1.0|100|Login failed|5|src=10.0.0.5 msg=bad pass\=word rt=1700000000000";
//! let ev = weir::cef::decode(line).unwrap();
//! assert_eq!(ev.device_vendor, "Acme");
//! assert_eq!(ev.get("msg"), Some("bad pass=word"));
//! assert_eq!(ev.rt_millis(0).unwrap(), Some(1_700_000_000_000));
//! ```

mod generate;
mod source;
mod time;

use std::borrow::Cow;
use std::fmt;

pub use generate::{Generator, GeneratorConfig};
pub use source::GeneratorSource;
pub use time::{parse_time, year_of};

/// A decoded CEF event, borrowing from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The CEF format version (`0` or `1`).
    pub version: u32,
    pub device_vendor: Cow<'a, str>,
    pub device_product: Cow<'a, str>,
    pub device_version: Cow<'a, str>,
    pub signature_id: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub severity: Cow<'a, str>,
    /// Extension pairs, in line order, values unescaped.
    pub extensions: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Event<'a> {
    /// The first value of extension `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The `rt` extension as ms since the epoch (`None` when absent). Dates
    /// without a year are placed relative to `reference_ms` (see
    /// [`parse_time`]).
    pub fn rt_millis(&self, reference_ms: i64) -> Result<Option<i64>, Error> {
        match self.get("rt") {
            None => Ok(None),
            Some(v) => parse_time(v, reference_ms).map(Some),
        }
    }
}

/// Why a line is not CEF. `column` is 1-based, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}")]
pub struct Error {
    /// Where decoding stopped.
    pub column: usize,
    /// What was expected there.
    pub expected: Cow<'static, str>,
}

impl Error {
    pub(crate) fn at(column: usize, expected: impl Into<Cow<'static, str>>) -> Self {
        Self {
            column,
            expected: expected.into(),
        }
    }
}

const HEADER_NAMES: [&str; 7] = [
    "version",
    "deviceVendor",
    "deviceProduct",
    "deviceVersion",
    "signatureId",
    "name",
    "severity",
];

/// Decodes one CEF line given as bytes: input that is not UTF-8 is an
/// error naming the first bad byte's column.
///
/// ```
/// let e = weir::cef::decode_bytes(b"CEF:0|V|P|1|1|N|1|src=\xff").unwrap_err();
/// assert_eq!(e.to_string(), "column 23: expected UTF-8 text");
/// ```
pub fn decode_bytes(line: &[u8]) -> Result<Event<'_>, Error> {
    let text =
        std::str::from_utf8(line).map_err(|e| Error::at(e.valid_up_to() + 1, "UTF-8 text"))?;
    decode(text)
}

/// Decodes one CEF line.
pub fn decode(line: &str) -> Result<Event<'_>, Error> {
    let line = line.trim_end_matches(['\r', '\n']);
    let start = memchr::memmem::find(line.as_bytes(), b"CEF:")
        .ok_or_else(|| Error::at(1, "a CEF header starting with 'CEF:'"))?;
    let bytes = line.as_bytes();
    let mut pos = start + 4;
    let mut fields: [&str; 7] = [""; 7];
    let mut escaped = [false; 7];
    for (i, field) in fields.iter_mut().enumerate() {
        let begin = pos;
        let mut has_escape = false;
        loop {
            match bytes.get(pos) {
                None => {
                    return Err(Error::at(
                        bytes.len() + 1,
                        format!("'|' after header field {}", HEADER_NAMES[i]),
                    ));
                }
                Some(b'\\') => {
                    has_escape = true;
                    pos += 2;
                }
                Some(b'|') => break,
                Some(_) => pos += 1,
            }
        }
        let end = pos.min(bytes.len());
        *field = &line[begin..end];
        escaped[i] = has_escape;
        pos = end + 1;
    }
    let version = fields[0]
        .parse::<u32>()
        .map_err(|_| Error::at(start + 5, "a numeric CEF version"))?;
    let header = |i: usize| -> Cow<'_, str> {
        if escaped[i] {
            Cow::Owned(unescape_header(fields[i]))
        } else {
            Cow::Borrowed(fields[i])
        }
    };
    let ext_start = pos.min(line.len());
    Ok(Event {
        version,
        device_vendor: header(1),
        device_product: header(2),
        device_version: header(3),
        signature_id: header(4),
        name: header(5),
        severity: header(6),
        extensions: decode_extension(&line[ext_start..], ext_start)?,
    })
}

fn unescape_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('|' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape_value(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(n @ ('=' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whitespace that separates extension pairs (and ends the last value).
const SEPARATORS: [char; 4] = [' ', '\t', '\r', '\n'];

fn is_separator(b: u8) -> bool {
    SEPARATORS.contains(&char::from(b))
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']')
}

/// Splits the extension into pairs. `offset` is the extension's position in
/// the line, for error columns.
fn decode_extension(ext: &str, offset: usize) -> Result<Vec<(&str, Cow<'_, str>)>, Error> {
    let bytes = ext.as_bytes();
    let mut pairs = Vec::with_capacity(16);
    // (key start, '=' position) of the pair being read.
    let mut current: Option<(usize, usize)> = None;
    let mut i = 0;
    let lead = bytes.iter().take_while(|&&b| is_separator(b)).count();
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' => {
                let mut k = i;
                while k > 0 && is_key_byte(bytes[k - 1]) {
                    k -= 1;
                }
                let starts_pair = k < i && (k == lead || (k > 0 && is_separator(bytes[k - 1])));
                if starts_pair {
                    if let Some((ks, eq)) = current {
                        let value = ext[eq + 1..k].trim_end_matches(SEPARATORS);
                        pairs.push((&ext[ks..eq], unescape_value(value)));
                    } else if k != lead {
                        return Err(Error::at(offset + lead + 1, "an extension key=value pair"));
                    }
                    current = Some((k, i));
                } else if current.is_none() {
                    return Err(Error::at(offset + i + 1, "an extension key before '='"));
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    match current {
        Some((ks, eq)) => {
            let value = ext[eq + 1..].trim_end_matches(SEPARATORS);
            pairs.push((&ext[ks..eq], unescape_value(value)));
        }
        None if ext[lead..].is_empty() => {}
        None => return Err(Error::at(offset + lead + 1, "an extension key=value pair")),
    }
    Ok(pairs)
}

/// Writes `ev` as one JSON object: the header fields under their CEF names,
/// then every extension key as written.
pub fn write_json(ev: &Event<'_>, out: &mut impl std::io::Write) -> std::io::Result<()> {
    write!(out, "{{\"version\":{}", ev.version)?;
    let header = [
        &ev.device_vendor,
        &ev.device_product,
        &ev.device_version,
        &ev.signature_id,
        &ev.name,
        &ev.severity,
    ];
    for (name, value) in HEADER_NAMES[1..].iter().zip(header) {
        write!(out, ",\"{name}\":")?;
        serde_json::to_writer(&mut *out, value.as_ref())?;
    }
    for (k, v) in &ev.extensions {
        out.write_all(b",")?;
        serde_json::to_writer(&mut *out, k)?;
        out.write_all(b":")?;
        serde_json::to_writer(&mut *out, v.as_ref())?;
    }
    out.write_all(b"}")
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::new();
        write_json(self, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

#[cfg(test)]
mod tests;
