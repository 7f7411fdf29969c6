//! Whether the hand-written field JSON (`record::fields_json`) still earns its place beside
//! `serde_json`: both encode the same 40,000 stored records (a member's dozen fields each),
//! interleaved, and the medians are printed with their ratio.
//!
//!   cargo run --release -p jianka-hub --example json_bench -- [--records N] [--repeat R]

use jianka_hub::merge::{FieldState, Fields, Text};
use jianka_hub::record::fields_json;
use std::collections::BTreeMap;
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n = arg("--records").unwrap_or(40_000);
    let repeat = arg("--repeat").unwrap_or(9);
    let records: Vec<Fields> = (0..n).map(member).collect();
    let (mut by_hand, mut by_serde) = (Vec::new(), Vec::new());
    let mut bytes = 0usize;
    for _ in 0..repeat {
        let t = Instant::now();
        bytes = records.iter().map(|f| fields_json(f).len()).sum();
        by_hand.push(t.elapsed());
        let t = Instant::now();
        let serde_bytes: usize = records
            .iter()
            .map(|f| {
                let object: BTreeMap<&str, &FieldState> = f.iter().map(|(k, v)| (k.as_str(), v)).collect();
                serde_json::to_string(&object).expect("in-memory encoding").len()
            })
            .sum();
        by_serde.push(t.elapsed());
        assert_eq!(serde_bytes, bytes, "the two encodings agree");
    }
    let (hand, serde) = (median(by_hand), median(by_serde));
    println!("field JSON of {n} member records ({bytes} bytes), medians of {repeat} interleaved runs:");
    println!("  record::fields_json        {:>8.1} ms", hand.as_secs_f64() * 1e3);
    println!("  serde_json (BTreeMap view) {:>8.1} ms", serde.as_secs_f64() * 1e3);
    println!("  serde / hand-written: {:.2}", serde.as_secs_f64() / hand.as_secs_f64());
}
