//! TestDriver tests of the `cef_alerts` example's processor.

#[path = "../examples/cef_alerts.rs"]
#[allow(dead_code)]
mod cef_alerts;

use cef_alerts::{Alert, BruteForce, Login, Windows, decode_line};

use weir::{CoreConfig, TestDriver};

const MIN: i64 = 60_000;

fn driver() -> TestDriver<BruteForce> {
    TestDriver::new(BruteForce {
        window_ms: MIN,
        threshold: 3,
    })
}

fn login(rt: i64, failed: bool) -> Login {
    Login { rt, failed }
}

#[test]
fn alert_fires_only_when_the_watermark_passes_the_window_end() {
    let mut t = driver();
    for i in 0..3 {
        t.push("10.0.0.5", 1_000 * i, login(1_000 * i, true));
    }
    t.push("10.0.0.5", 30_000, login(30_000, false));
    t.advance_watermark_to(MIN - 1);
    assert!(t.take_emitted().is_empty(), "window [0, 60000) still open");
    t.advance_watermark_to(MIN);
    assert_eq!(
        t.take_emitted(),
        vec![Alert {
            src: "10.0.0.5".into(),
            window_start: 0,
            failed: 3,
            events: 4,
            last_seen: 30_000
        }]
    );
    assert_eq!(
        t.state("10.0.0.5"),
        Windows::default(),
        "closed window cleared"
    );
    assert_eq!(t.pending_timers(), 0);
}

#[test]
fn below_threshold_no_alert_and_windows_are_separate() {
    let mut t = driver();
    t.push("a", 59_000, login(59_000, true));
    t.push("a", 59_500, login(59_500, true));
    t.push("a", 60_000, login(60_000, true)); // next window
    t.push("a", 58_000, login(58_000, true)); // out of order, first window
    t.push("b", 1_000, login(1_000, true));
    t.advance_watermark_to(2 * MIN);
    let alerts = t.take_emitted();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (
            alerts[0].src.as_str(),
            alerts[0].window_start,
            alerts[0].failed
        ),
        ("a", 0, 3)
    );
}

#[test]
fn negative_times_use_floor_windows() {
    let mut t = driver();
    for rt in [-1, -2, -3] {
        t.push("a", rt, login(rt, true));
    }
    t.finish();
    assert_eq!(t.take_emitted()[0].window_start, -MIN);
}

#[test]
fn idle_input_closes_windows_through_processing_time() {
    let mut t = TestDriver::with_config(
        BruteForce {
            window_ms: MIN,
            threshold: 1,
        },
        CoreConfig {
            out_of_orderness_ms: Some(5_000),
            idle_watermark_ms: Some(10_000),
            idle_passivation_ms: None,
            ..CoreConfig::default()
        },
    );
    t.push("a", 10_000, login(10_000, true));
    t.advance_processing_time(10_000);
    assert!(t.take_emitted().is_empty());
    // Idle from 10 s on; the watermark (5 s) needs 55 s more to reach 60 s.
    t.advance_processing_time(54_999);
    assert!(t.take_emitted().is_empty());
    t.advance_processing_time(1);
    assert_eq!(t.take_emitted().len(), 1);
}

#[test]
fn decoder_rejects_with_reasons() {
    let ok = decode_line(
        b"CEF:0|V|P|1|100|Login|5|src=1.2.3.4 outcome=failure rt=5",
        2026,
    )
    .expect("decodes");
    assert_eq!(
        (ok.key.as_str(), ok.timestamp, ok.value.failed),
        ("1.2.3.4", Some(5), true)
    );
    let other = decode_line(
        b"CEF:0|V|P|1|200|Scan|5|src=1.2.3.4 outcome=failure rt=5",
        2026,
    )
    .expect("decodes");
    assert!(!other.value.failed);
    assert_eq!(
        decode_line(b"CEF:0|V|P|1|100|L|5|rt=5", 2026).unwrap_err(),
        "missing src extension"
    );
    assert_eq!(
        decode_line(b"CEF:0|V|P|1|100|L|5|src=x", 2026).unwrap_err(),
        "missing rt extension"
    );
    assert!(
        decode_line(b"CEF:0|V|P|1|100|L|5|src=x rt=soon", 2026)
            .unwrap_err()
            .starts_with("bad rt")
    );
    assert!(decode_line(b"nope", 2026).unwrap_err().contains("column 1"));
    assert!(
        decode_line(&[0xFF, 0xFE], 2026)
            .unwrap_err()
            .contains("UTF-8")
    );
}

#[test]
fn a_key_with_two_open_windows_at_end_of_input_gets_both_alerts() {
    // The ten lines: five failures in the two seconds before a
    // minute boundary, five in the half second after it. With 5 s of
    // out-of-orderness the first window is still open when the input ends.
    let mut t = TestDriver::with_config(
        BruteForce {
            window_ms: MIN,
            threshold: 5,
        },
        CoreConfig {
            out_of_orderness_ms: Some(5_000),
            idle_watermark_ms: None,
            idle_passivation_ms: None,
            ..CoreConfig::default()
        },
    );
    let base = 1_700_000_040_000;
    let times = (0..5)
        .map(|i| 1_700_000_098_000 + i * 100)
        .chain((0..5).map(|i| 1_700_000_100_000 + i * 100));
    for rt in times {
        t.push("10.1.1.1", rt, login(rt, true));
    }
    assert!(t.take_emitted().is_empty(), "both windows still open");
    t.finish();
    let starts: Vec<i64> = t.take_emitted().iter().map(|a| a.window_start).collect();
    assert_eq!(starts, vec![base, base + MIN]);
    assert_eq!(t.pending_timers(), 0);
}
