//! The real `jianka-hub` binary where a newcomer meets it: output into a pipe whose reader is
//! gone (`jianka-hub report | head`) ends quietly, never with a panic about a broken pipe.

use std::process::{Command, Output};

fn hub(dir: &std::path::Path, args: &[&str], closed_pipe: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jianka-hub"));
    c.args(args).current_dir(dir).env("JIANKA_NOW", "2014-06-01T09:00:00+08:00");
    if closed_pipe {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        c.stdout(writer.try_clone().unwrap()).stderr(writer);
    }
    c.output().unwrap()
}

#[test]
fn a_closed_pipe_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let init = hub(dir.path(), &["init", "--region", "42", "--dir", "prov"], false);
    assert!(init.status.success(), "{init:?}");
    for args in [
        &["report", "--config", "prov/hub.toml"][..],
        &["report", "--config", "prov/hub.toml", "--json"],
        &["conflicts", "list", "--config", "prov/hub.toml"],
        &["audit", "verify", "--config", "prov/hub.toml"],
        &["init", "--region", "420322", "--dir", "county"],
    ] {
        let out = hub(dir.path(), args, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
