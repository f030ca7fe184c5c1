//! Talking to a worker's admin server: plain HTTP GETs and the Prometheus
//! text format.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `GET path` on `127.0.0.1:port`: the status code and the body, or `None`
/// when nothing answers.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// One sample: the metric name and its labels.
pub type Series = (String, BTreeMap<String, String>);

/// The samples of a Prometheus text exposition.
pub fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value.parse().expect("sample value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("label");
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.insert((name, labels), value);
    }
    out
}

/// Scrapes `/metrics`.
pub fn scrape(port: u16) -> BTreeMap<Series, f64> {
    let (status, body) = get(port, "/metrics").expect("the admin server answers");
    assert_eq!(status, 200, "/metrics: {body}");
    parse(&body)
}

/// Values of `name`, by their `partition` label.
pub fn by_partition(m: &BTreeMap<Series, f64>, name: &str) -> BTreeMap<String, f64> {
    m.iter()
        .filter(|((n, _), _)| n == name)
        .filter_map(|((_, l), v)| Some((l.get("partition")?.clone(), *v)))
        .collect()
}

/// Sum of every sample of `name`.
pub fn total(m: &BTreeMap<Series, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, v)| v)
        .sum()
}

/// Scrapes until `done` holds (at most `limit`); returns the last scrape.
pub fn scrape_until(
    port: u16,
    limit: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<Series, f64>) -> bool,
) -> BTreeMap<Series, f64> {
    let deadline = Instant::now() + limit;
    loop {
        let m = get(port, "/metrics")
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| parse(&b));
        if let Some(m) = m {
            if done(&m) {
                return m;
            }
            if Instant::now() > deadline {
                let shown: Vec<String> = m
                    .iter()
                    .filter(|((n, _), _)| !n.ends_with("_bucket"))
                    .map(|((n, l), v)| format!("{n}{l:?} {v}"))
                    .collect();
                panic!(
                    "{what}: not seen within {limit:?}; last scrape:\n{}",
                    shown.join("\n")
                );
            }
        } else {
            assert!(Instant::now() < deadline, "{what}: /metrics never answered");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every sample name the exposition holds, histogram series folded into
/// their metric's name.
pub fn names(m: &BTreeMap<Series, f64>) -> std::collections::BTreeSet<String> {
    m.keys()
        .map(|(n, _)| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .filter(|base| m.keys().any(|(k, _)| k == &format!("{base}_bucket")))
                .unwrap_or(n)
                .to_string()
        })
        .collect()
}
