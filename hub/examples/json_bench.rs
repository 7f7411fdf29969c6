//! Whether a hand-written encoder of the stored field JSON would earn its place beside
//! `serde_json` (what `record::fields_json` uses): both encode the same 40,000 stored records (a
//! member's dozen fields each), interleaved, and the medians are printed with their ratio. The
//! hub wrote this JSON by hand until this benchmark showed serde at least as fast.
//!
//!   cargo run --release -p jianka-hub --example json_bench -- [--records N] [--repeat R]

use jianka_hub::merge::{FieldState, Fields, Text};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok())
}

fn member(i: usize) -> Fields {
    let fields = [
        ("education", "primary".to_string()),
        ("health", "healthy".into()),
        ("household", format!("420322105200-{:04}", i / 4)),
        ("id_number", format!("4203221950{:08}", i)),
        ("labour", "ordinary".into()),
        ("medical_insurance", "true".into()),
        ("name", format!("成员{i}")),
        ("pension_insurance", "false".into()),
        ("relation", "head".into()),
        ("sex", "female".into()),
        ("village", "420322105200".into()),
    ];
    fields
        .into_iter()
        .map(|(n, v)| (Text::from(n), FieldState(v.into(), 1_700_000_000_000 + i as u64, "420322105".into())))
        .collect()
}

/// The hub's former hand-written encoder (as it was), kept here as the comparison.
fn by_hand(fields: &Fields) -> String {
    let mut out = String::with_capacity(fields.len() * 40 + 2);
    out.push('{');
    for (i, (name, f)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, name);
        out.push_str(":[");
        push_json_str(&mut out, &f.0);
        out.push(',');
        push_uint(&mut out, f.1);
        out.push(',');
        push_json_str(&mut out, &f.2);
        out.push(']');
    }
    out.push('}');
    out
}

/// A JSON string literal with `serde_json`'s escapes.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a char boundary.
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

fn push_uint(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n = arg("--records").unwrap_or(40_000);
    let repeat = arg("--repeat").unwrap_or(9);
    let records: Vec<Fields> = (0..n).map(member).collect();
    let (mut hand_runs, mut serde_runs) = (Vec::new(), Vec::new());
    let mut bytes = 0usize;
    for _ in 0..repeat {
        let t = Instant::now();
        bytes = records.iter().map(|f| by_hand(f).len()).sum();
        hand_runs.push(t.elapsed());
        let t = Instant::now();
        let serde_bytes: usize = records.iter().map(|f| jianka_hub::record::fields_json(f).len()).sum();
        serde_runs.push(t.elapsed());
        assert_eq!(serde_bytes, bytes, "the two encodings agree");
    }
    let (hand, serde) = (median(hand_runs), median(serde_runs));
    println!("field JSON of {n} member records ({bytes} bytes), medians of {repeat} interleaved runs:");
    println!("  hand-written encoder       {:>8.1} ms", hand.as_secs_f64() * 1e3);
    println!("  serde_json (fields_json)   {:>8.1} ms", serde.as_secs_f64() * 1e3);
    println!("  serde / hand-written: {:.2}", serde.as_secs_f64() / hand.as_secs_f64());
}
