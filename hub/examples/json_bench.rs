//! The stored text of record fields (`stored_fields`): the form the hub writes (a row's common
//! version and writer once, under `""`) beside the form every field had before (each an array
//! `[value, version, writer]`, what serde writes for the field map), and the stored form written
//! into one reused buffer (as the SQLite writer does) rather than a new string per row. All three
//! encode the same 40,000 member records, interleaved; medians and bytes are printed, with ratios
//! against the earlier form. (The hub wrote the earlier form by hand until this benchmark showed
//! serde at least as fast.)
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n = arg("--records").unwrap_or(40_000);
    let repeat = arg("--repeat").unwrap_or(9);
    let records: Vec<Fields> = (0..n).map(member).collect();
    let (mut earlier_runs, mut stored_runs, mut reused_runs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut earlier_bytes, mut stored_bytes) = (0usize, 0usize);
    let mut buf = Vec::with_capacity(4096);
    for _ in 0..repeat {
        let t = Instant::now();
        earlier_bytes = records.iter().map(|f| serde_json::to_string(f).unwrap().len()).sum();
        earlier_runs.push(t.elapsed());
        let t = Instant::now();
        stored_bytes = records.iter().map(|f| jianka_hub::record::fields_json(f).len()).sum();
        stored_runs.push(t.elapsed());
        let t = Instant::now();
        let reused_bytes: usize = records
            .iter()
            .map(|f| {
                buf.clear();
                jianka_hub::stored_fields::write_json(f, &mut buf);
                buf.len()
            })
            .sum();
        reused_runs.push(t.elapsed());
        assert_eq!(reused_bytes, stored_bytes, "one form, two ways of writing it");
    }
    for f in &records {
        assert_eq!(&jianka_hub::stored_fields::parse(&jianka_hub::record::fields_json(f)).unwrap(), f);
    }
    let (earlier, stored, reused) = (median(earlier_runs), median(stored_runs), median(reused_runs));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("field JSON of {n} member records, medians of {repeat} interleaved runs:");
    println!("  earlier form, every field an array   {:>8.1} ms  {earlier_bytes:>10} bytes", ms(earlier));
    println!(
        "  stored form (fields_json)            {:>8.1} ms  {stored_bytes:>10} bytes  ({:.2} of the earlier time, {:.2} of its bytes)",
        ms(stored),
        ms(stored) / ms(earlier),
        stored_bytes as f64 / earlier_bytes as f64
    );
    println!(
        "  stored form into one reused buffer   {:>8.1} ms  ({:.2} of the earlier time)",
        ms(reused),
        ms(reused) / ms(earlier)
    );
}
