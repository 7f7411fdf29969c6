//! What the real binary does when its reader stops early (`jianka-node status | head`): it ends
//! quietly, never with a panic about a broken pipe.

mod common;
use common::*;
use jianka_node::import::{ImportOptions, import_households};

const NOW: &str = "2014-06-01T09:00:00+08:00";

/// A node with 200 households: enough lines that every listing writes many times.
fn node_with_households() -> TestNode {
    let t = TestNode::new();
    let mut rows = Vec::new();
    for k in 0..200u32 {
        rows.extend(household_rows(VILLAGE, &format!("{k:04}"), 2, k));
    }
    let p = t.path("hh.csv");
    write_csv(&p, &rows);
    let mut node = t.open(clock_at(NOW));
    let r = import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX })
        .unwrap();
    assert!(r.errors.is_empty());
    t
}

#[test]
fn a_closed_pipe_ends_every_printing_command_quietly() {
    let t = node_with_households();
    let hid = format!("{VILLAGE}-0001");
    let commands: [&[&str]; 6] = [
        &["status"],
        &["status", "--json"],
        &["household", "list", "--year", "2014"],
        &["household", "list", "--year", "2014", "--json"],
        &["household", "show", &hid, "--year", "2014"],
        &["workflow", "show", &hid, "--year", "2014"],
    ];
    for args in commands {
        let out = t.run_into_closed_pipe(NOW, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn import_errors_into_a_closed_pipe_end_quietly_too() {
    // `import file 2>&1 | head` on a file with many bad rows: the messages go to a closed pipe.
    let t = TestNode::new();
    let mut rows = Vec::new();
    for k in 0..200u32 {
        let mut h = household_rows(VILLAGE, &format!("{k:04}"), 2, k);
        h[1][5] = "男".into();
        rows.extend(h);
    }
    let p = t.path("bad.csv");
    write_csv(&p, &rows);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = t
        .command(NOW)
        .args(["import", p.to_str().unwrap(), "--year", "2014", "--dry-run"])
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
