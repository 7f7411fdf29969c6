//! `jianka-hub scale split` through the real binary: 规模分解 of the province's people to counties
//! in proportion to weights and of poor villages by county class — exact sums, shares within one
//! of the exact proportion — and bad files refused with the line named.

use std::collections::BTreeMap;
use std::process::{Command, Output};

fn hub(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jianka-hub")).args(args).current_dir(dir).output().unwrap()
}

fn split_json(out: &Output) -> BTreeMap<String, u64> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_provinces_people_split_to_counties_add_up_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // Seed 000: 588.53万 people, by each county's 2013 stock of registered people.
    let stock = [("420322", 131_207u64), ("420323", 98_114), ("420324", 77_530), ("420325", 52_871), ("421221", 3)];
    let mut csv = String::from("region,weight\n");
    for (r, w) in stock {
        csv.push_str(&format!("{r},{w}\n"));
    }
    std::fs::write(dir.path().join("w.csv"), csv).unwrap();
    let init = hub(dir.path(), &["init", "--region", "42", "--dir", "prov"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let args = ["scale", "split", "--total", "5885300", "--weights", "w.csv", "--config", "prov/hub.toml", "--json"];
    let split = split_json(&hub(dir.path(), &args));
    assert_eq!(split.values().sum::<u64>(), 5_885_300, "{split:?}");
    let sum: u64 = stock.iter().map(|(_, w)| w).sum();
    for (r, w) in stock {
        let exact = 5_885_300f64 * w as f64 / sum as f64;
        assert!((split[r] as f64 - exact).abs() < 1.0, "{r}: {} against {exact}", split[r]);
    }
    // The same input, the same split.
    assert_eq!(split_json(&hub(dir.path(), &args)), split);
}

#[test]
fn poor_villages_split_by_class_share() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("v.csv"),
        "region,villages,class\n420322,301,片区县\n420323,250,片区县\n420324,410,其他\n420325,199,其他\n",
    )
    .unwrap();
    let out = hub(
        dir.path(),
        &["scale", "split", "--villages", "v.csv", "--share", "片区县=25", "--share", "其他=15", "--json"],
    );
    let split = split_json(&out);
    // 551 × 25 % = 137.75 → 138; 609 × 15 % = 91.35 → 91.
    assert_eq!(split["420322"] + split["420323"], 138);
    assert_eq!(split["420324"] + split["420325"], 91);
    let out = hub(dir.path(), &["scale", "split", "--villages", "v.csv", "--share", "片区县=25"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no share given for class \"其他\""));
}

#[test]
fn bad_weight_files_are_refused_with_the_line_named() {
    let dir = tempfile::tempdir().unwrap();
    let init = hub(dir.path(), &["init", "--region", "42", "--dir", "prov"]);
    assert!(init.status.success());
    for (body, wants) in [
        ("region,weight\n420322,10\n420322,5\n", "w.csv:3: region 420322 is listed twice"),
        ("region,weight\n420322,10\n420323,-4\n", "w.csv:3: weight \"-4\""),
        ("region,weight\n420322,ten\n", "w.csv:2: weight \"ten\""),
        ("region,weight\n420322,1\n430102,1\n", "w.csv:3: 430102 is not a region of 42"),
        ("region,weight\n420322105,1\n", "w.csv:2: 420322105 is not a 县"),
        ("region,weight\n42x,1\n", "w.csv:2: \"42x\" is not a region code"),
        ("county,weight\n420322,1\n", "w.csv:1: the header must be `region,weight`"),
        ("region,weight\n420322,0\n", "the weights add up to zero"),
    ] {
        std::fs::write(dir.path().join("w.csv"), body).unwrap();
        let out =
            hub(dir.path(), &["scale", "split", "--total", "100", "--weights", "w.csv", "--config", "prov/hub.toml"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{body:?}: {stderr}");
        assert!(stderr.contains(wants), "{body:?}: wanted {wants:?} in {stderr}");
        assert!(out.stdout.is_empty(), "nothing printed as a result: {}", String::from_utf8_lossy(&out.stdout));
    }
}

/// With the official code list (`--regions`, the 2023 tables' format), a code that does not
/// exist is refused as unknown, with its line; the counties of the list split as before.
#[test]
fn a_region_missing_from_the_official_list_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let list = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/regions/areas.csv");
    std::fs::write(dir.path().join("w.csv"), "region,weight\n420322,2\n420399,1\n").unwrap();
    let out = hub(dir.path(), &["scale", "split", "--total", "90", "--weights", "w.csv", "--regions", list]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("w.csv:3: 420399 is not a known region"), "{stderr}");
    std::fs::write(dir.path().join("w.csv"), "region,weight\n420322,2\n420323,1\n").unwrap();
    let out = hub(dir.path(), &["scale", "split", "--total", "90", "--weights", "w.csv", "--regions", list, "--json"]);
    assert_eq!(split_json(&out), BTreeMap::from([("420322".into(), 60), ("420323".into(), 30)]));
    std::fs::write(dir.path().join("bad-list.csv"), "name,code\nx,420322\n").unwrap();
    let out = hub(dir.path(), &["scale", "split", "--total", "90", "--weights", "w.csv", "--regions", "bad-list.csv"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("first column must be `code`"));
}

/// Seed 000's poor villages: 25 % of the 9,866 administrative villages of 片区县 and 15 % of the
/// 15,682 of the other counties, or the class totals it states (2,470 and 2,351, 4,821 in all):
/// every split adds up to its class's number exactly, each county within one of its share.
#[test]
fn the_seeds_poor_village_totals_are_reproduced() {
    let dir = tempfile::tempdir().unwrap();
    // 30 片区县 and 50 other counties whose villages add up to the seed's class totals.
    let spread = |n: usize, total: u64| -> Vec<u64> {
        let base = total / n as u64;
        (0..n).map(|i| base + u64::from((i as u64) < total % n as u64) + (i as u64 % 7) * 3 - 9).collect()
    };
    let (mut a, mut b) = (spread(30, 9_866), spread(50, 15_682));
    // The ± pattern above sums to a known offset; fold it into the last county.
    let fix = |v: &mut Vec<u64>, total: u64| {
        let s: u64 = v.iter().sum();
        let last = v.last_mut().unwrap();
        *last = *last + total - s;
    };
    fix(&mut a, 9_866);
    fix(&mut b, 15_682);
    let mut csv = String::from("region,villages,class\n");
    for (i, v) in a.iter().enumerate() {
        csv.push_str(&format!("42{:04},{v},片区县\n", 1001 + i));
    }
    for (i, v) in b.iter().enumerate() {
        csv.push_str(&format!("42{:04},{v},其他\n", 2001 + i));
    }
    std::fs::write(dir.path().join("v.csv"), csv).unwrap();
    let class_sum = |split: &BTreeMap<String, u64>, prefix: &str| -> u64 {
        split.iter().filter(|(r, _)| r.starts_with(prefix)).map(|(_, n)| n).sum()
    };
    let within_one = |split: &BTreeMap<String, u64>, villages: &[u64], first: usize, number: u64| {
        let total: u64 = villages.iter().sum();
        for (i, v) in villages.iter().enumerate() {
            let exact = number as f64 * *v as f64 / total as f64;
            let got = split[&format!("42{:04}", first + i)] as f64;
            assert!((got - exact).abs() < 1.0, "county {i}: {got} against {exact}");
        }
    };
    let totals = ["--class-total", "片区县=2470", "--class-total", "其他=2351"];
    let mut args = vec!["scale", "split", "--villages", "v.csv", "--json"];
    args.extend(totals);
    let split = split_json(&hub(dir.path(), &args));
    assert_eq!((class_sum(&split, "421"), class_sum(&split, "422")), (2_470, 2_351));
    assert_eq!(split.values().sum::<u64>(), 4_821);
    within_one(&split, &a, 1001, 2_470);
    within_one(&split, &b, 2001, 2_351);
    // By share: 9,866 × 25 % = 2,466.5 → 2,467 and 15,682 × 15 % = 2,352.3 → 2,352 (half up).
    let split = split_json(&hub(
        dir.path(),
        &["scale", "split", "--villages", "v.csv", "--share", "片区县=25", "--share", "其他=15", "--json"],
    ));
    assert_eq!((class_sum(&split, "421"), class_sum(&split, "422")), (2_467, 2_352));
    within_one(&split, &a, 1001, 2_467);
}
