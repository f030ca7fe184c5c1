use super::*;

fn ext<'a>(ev: &'a Event<'_>) -> Vec<(&'a str, &'a str)> {
    ev.extensions
        .iter()
        .map(|(k, v)| (*k, v.as_ref()))
        .collect()
}

#[test]
fn plain_line() {
    let ev = decode("CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232")
        .expect("decodes");
    assert_eq!(ev.version, 0);
    assert_eq!(ev.device_vendor, "Security");
    assert_eq!(ev.device_product, "threatmanager");
    assert_eq!(ev.device_version, "1.0");
    assert_eq!(ev.signature_id, "100");
    assert_eq!(ev.name, "worm successfully stopped");
    assert_eq!(ev.severity, "10");
    assert_eq!(
        ext(&ev),
        vec![("src", "10.0.0.1"), ("dst", "2.1.2.2"), ("spt", "1232")]
    );
    assert!(
        matches!(ev.device_vendor, Cow::Borrowed(_)),
        "no escape, no allocation"
    );
}

#[test]
fn header_escapes() {
    let ev = decode(r"CEF:1|Ven\|dor|Pro\\duct|1.0|sig|a \| b \\ c|Low|").expect("decodes");
    assert_eq!(ev.version, 1);
    assert_eq!(ev.device_vendor, "Ven|dor");
    assert_eq!(ev.device_product, r"Pro\duct");
    assert_eq!(ev.name, r"a | b \ c");
    assert_eq!(ev.severity, "Low");
    assert!(ev.extensions.is_empty());
}

#[test]
fn extension_escapes() {
    let ev =
        decode(r"CEF:0|V|P|1|1|N|1|a=x\=y b=back\\slash c=line\nbreak d=cr\rhere e=pi\|pe f=t\tab")
            .expect("decodes");
    assert_eq!(
        ext(&ev),
        vec![
            ("a", "x=y"),
            ("b", r"back\slash"),
            ("c", "line\nbreak"),
            ("d", "cr\rhere"),
            ("e", r"pi\|pe"),
            ("f", r"t\tab")
        ],
        "unknown escapes are kept as written (Logstash's answer)"
    );
}

#[test]
fn tabs_separate_pairs_and_trailing_whitespace_is_not_a_value() {
    let ev = decode("CEF:0|V|P|1|1|N|1|a=1\tb=two words\t c=3 \t\r\n").expect("decodes");
    assert_eq!(ext(&ev), vec![("a", "1"), ("b", "two words"), ("c", "3")]);
    let ev = decode("CEF:0|V|P|1|1|N|1|\ta=x\t").expect("decodes");
    assert_eq!(ext(&ev), vec![("a", "x")]);
    let ev = decode("CEF:0|V|P|1|1|N|1|msg=a\tb\tx=1").expect("decodes");
    assert_eq!(
        ext(&ev),
        vec![("msg", "a\tb"), ("x", "1")],
        "a tab inside a value that is not before a key stays"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_an_error() {
    let e = decode_bytes(b"CEF:0|V|P|1|1|N|1|src=10.9.\xff\xfe rt=1").unwrap_err();
    assert_eq!((e.column, e.expected.as_ref()), (28, "UTF-8 text"));
    assert_eq!(
        decode_bytes(b"CEF:0|V|P|1|1|N|1|src=x\r\n")
            .expect("decodes")
            .get("src"),
        Some("x")
    );
}

#[test]
fn decoding_is_total_on_arbitrary_lines() {
    use proptest::prelude::*;
    let bytes = proptest::collection::vec(
        prop_oneof![
            Just(b' '),
            Just(b'\t'),
            Just(b'='),
            Just(b'\\'),
            Just(b'|'),
            Just(b'a'),
            Just(b'\r'),
            any::<u8>()
        ],
        0..60,
    );
    proptest!(|(tail in bytes)| {
        let mut line = b"CEF:0|V|P|1|1|N|1|".to_vec();
        line.extend_from_slice(&tail);
        if let Ok(ev) = decode_bytes(&line) {
            for (k, v) in &ev.extensions {
                prop_assert!(!k.is_empty());
                // (An escaped `\r` or `\n` may end a value; raw whitespace
                // may not.)
                prop_assert!(!v.ends_with([' ', '\t']), "{v:?}");
            }
        }
    });
}

#[test]
fn values_with_spaces_pipes_and_equals_looking_text() {
    let ev = decode("CEF:0|V|P|1|1|N|1|msg=user logged in | from home = yes act=blocked x=a=b")
        .expect("decodes");
    assert_eq!(
        ext(&ev),
        vec![
            ("msg", "user logged in | from home = yes"),
            ("act", "blocked"),
            ("x", "a=b")
        ]
    );
}

#[test]
fn empty_extension_and_trailing_spaces() {
    let ev = decode("CEF:0|V|P|1|1|N|1|").expect("decodes");
    assert!(ev.extensions.is_empty());
    let ev = decode("CEF:0|V|P|1|1|N|1|   ").expect("decodes");
    assert!(ev.extensions.is_empty());
    let ev = decode("CEF:0|V|P|1|1|N|1|  a=1   b=  2  \r\n").expect("decodes");
    assert_eq!(ext(&ev), vec![("a", "1"), ("b", "  2")]);
    let ev = decode("CEF:0|V|P|1|1|N|1|a=").expect("decodes");
    assert_eq!(ext(&ev), vec![("a", "")]);
}

#[test]
fn syslog_prefix() {
    let ev =
        decode("<134>Nov 22 10:00:00 fw-1.example CEF:0|V|P|1|1|N|1|src=1.2.3.4").expect("decodes");
    assert_eq!(ev.get("src"), Some("1.2.3.4"));
    let ev = decode("Sep 19 08:26:10 host CEF:0|V|P|1|1|N|1|rt=Sep 19 2023 08:26:10 UTC")
        .expect("decodes");
    assert_eq!(ev.rt_millis(2000), Ok(Some(1_695_111_970_000)));
}

#[test]
fn both_date_formats_and_epoch_in_rt() {
    let ev = decode("CEF:0|V|P|1|1|N|1|rt=Nov 14 2023 22:13:20.123 src=x").expect("decodes");
    assert_eq!(ev.rt_millis(0), Ok(Some(1_700_000_000_123)));
    let ev = decode("CEF:0|V|P|1|1|N|1|rt=Nov 14 22:13:20 src=x").expect("decodes");
    assert_eq!(ev.rt_millis(1_700_500_000_000), Ok(Some(1_700_000_000_000)));
    let ev = decode("CEF:0|V|P|1|1|N|1|rt=1700000000000").expect("decodes");
    assert_eq!(ev.rt_millis(0), Ok(Some(1_700_000_000_000)));
    let ev = decode("CEF:0|V|P|1|1|N|1|src=x").expect("decodes");
    assert_eq!(ev.rt_millis(0), Ok(None));
    let ev = decode("CEF:0|V|P|1|1|N|1|rt=yesterday").expect("decodes");
    assert_eq!(ev.rt_millis(0).unwrap_err().column, 1);
}

#[test]
fn garbage_is_an_error_naming_column_and_expectation() {
    let e = decode("hello world").unwrap_err();
    assert_eq!(
        e.to_string(),
        "column 1: expected a CEF header starting with 'CEF:'"
    );
    let e = decode("CEF:0|Vendor|Product").unwrap_err();
    assert_eq!(e.column, 21);
    assert!(e.expected.contains("deviceProduct"), "{e}");
    let e = decode("CEF:0|a\\").unwrap_err();
    assert_eq!(
        e.column, 9,
        "a trailing backslash does not move the column past the end"
    );
    let e = decode("CEF:x|V|P|1|1|N|1|").unwrap_err();
    assert_eq!(
        (e.column, e.expected.as_ref()),
        (5, "a numeric CEF version")
    );
    let e = decode("CEF:0|V|P|1|1|N|1|garbage a=b").unwrap_err();
    assert_eq!(e.column, 19);
    let e = decode("CEF:0|V|P|1|1|N|1|just text").unwrap_err();
    assert!(e.expected.contains("key=value"));
    let e = decode("CEF:0|V|P|1|1|N|1|=oops").unwrap_err();
    assert!(e.expected.contains("key"));
    assert!(decode("").is_err());
}

#[test]
fn json_output_names_header_fields() {
    let ev = decode(r#"CEF:0|V|P|1|100|N "q"|5|src=1.2.3.4 msg=a\=b"#).expect("decodes");
    assert_eq!(
        ev.to_string(),
        r#"{"version":0,"deviceVendor":"V","deviceProduct":"P","deviceVersion":"1","signatureId":"100","name":"N \"q\"","severity":"5","src":"1.2.3.4","msg":"a=b"}"#
    );
}
