//! Figures printed by `jianka-bench`: each beside a baseline measured in the same run.

use crate::generate::Generator;
use jianka_shared::{
    Hlc, RegionCode,
    changeset::{self, Draft, FieldWrite, Limits, Op},
    domain::Status,
    record::{Record, RecordKind},
};
use std::time::Instant;

/// `n` member records of one township, as a node would send them on first sync.
pub fn member_records(n: usize, seed: u64) -> Vec<Record> {
    let mut g = Generator::new(seed, 2014);
    let mut out = Vec::with_capacity(n);
    let mut number = 0;
    let villages = ["420322105200", "420322105201", "420322105202", "420322105203"];
    while out.len() < n {
        let h = g.household(villages[number as usize % villages.len()], number, Status::CountyReview);
        number += 1;
        out.extend(h.to_records().into_iter().filter(|r| r.key.kind == RecordKind::Member));
    }
    out.truncate(n);
    out
}

pub fn upserts(records: &[Record], base_hlc: u64) -> Vec<Op> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| Op::Upsert {
            key: r.key.clone(),
            fields: r
                .fields
                .iter()
                .map(|(k, v)| FieldWrite {
                    name: k.clone(),
                    value: v.clone(),
                    version: Hlc::new(base_hlc + i as u64, 0),
                    base: Hlc::ZERO,
                })
                .collect(),
        })
        .collect()
}

/// The same records as CSV: key, then the field values in name order.
pub fn records_csv(records: &[Record]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if let Some(first) = records.first() {
        let mut header = vec!["id".to_string()];
        header.extend(first.fields.keys().cloned());
        w.write_record(&header).expect("in-memory write");
    }
    for r in records {
        let mut row = vec![r.key.id.clone()];
        row.extend(r.fields.values().cloned());
        w.write_record(&row).expect("in-memory write");
    }
    w.into_inner().expect("in-memory write")
}

pub struct ChangeSetFigures {
    pub records: usize,
    pub seal_per_sec: f64,
    pub open_per_sec: f64,
    pub wire_bytes: usize,
    pub csv_bytes: usize,
    pub csv_zstd19_bytes: usize,
    pub zstd19_per_sec: f64,
}

/// Times sealing and opening change sets of `n` member records on one core.
pub fn changeset_figures(n: usize) -> ChangeSetFigures {
    let records = member_records(n, 42);
    let ops = upserts(&records, 1_700_000_000_000);
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let draft = Draft {
        origin: RegionCode::parse("420322105").expect("valid"),
        seq: 1,
        prev_hash: [0; 32],
        year: 2014,
        hlc: Hlc::new(1_700_000_000_000, 0),
        ops,
    };
    let rounds = 10;
    let t = Instant::now();
    let mut sealed = Vec::new();
    for _ in 0..rounds {
        sealed = draft.seal(&key).expect("seal");
    }
    let seal_secs = t.elapsed().as_secs_f64() / rounds as f64;
    let vk = key.verifying_key();
    let t = Instant::now();
    for _ in 0..rounds {
        let cs = changeset::open(&sealed, &vk, Limits::default()).expect("open");
        assert_eq!(cs.ops.len(), n);
    }
    let open_secs = t.elapsed().as_secs_f64() / rounds as f64;
    let csv = records_csv(&records);
    let t = Instant::now();
    let z19 = zstd::bulk::compress(&csv, 19).expect("zstd");
    let z19_secs = t.elapsed().as_secs_f64();
    ChangeSetFigures {
        records: n,
        seal_per_sec: n as f64 / seal_secs,
        open_per_sec: n as f64 / open_secs,
        wire_bytes: sealed.len(),
        csv_bytes: csv.len(),
        csv_zstd19_bytes: z19.len(),
        zstd19_per_sec: n as f64 / z19_secs,
    }
}

pub fn print_changeset(f: &ChangeSetFigures) {
    println!("change-set format, {} member records, one core:", f.records);
    println!(
        "  encode+compress+sign   {:>12.0} records/s   (target >= 300000; zstd -19 of the CSV alone: {:.0} records/s)",
        f.seal_per_sec, f.zstd19_per_sec
    );
    println!("  verify+decompress+decode {:>10.0} records/s   (target >= 300000)", f.open_per_sec);
    let per = f.wire_bytes as f64 / f.records as f64;
    let base = f.csv_zstd19_bytes as f64 / f.records as f64;
    println!(
        "  wire size              {:>12.1} bytes/record (envelope {} B; CSV {} B raw, {} B with zstd -19 = {:.1} bytes/record)",
        per, f.wire_bytes, f.csv_bytes, f.csv_zstd19_bytes, base
    );
    println!("  wire / zstd-19 CSV     {:>12.3}           (target <= 1.25)", per / base);
}
