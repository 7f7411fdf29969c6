//! A newcomer's first hour: the setup `jianka-hub --help` teaches, run literally — every line of
//! it, in a fresh directory holding the repository's `config/`, province and county on one
//! machine on their default ports — and then a township's first sync and the county's forward
//! through what it built.

use anyhow::{Context, bail, ensure};
use jianka_tests::harness::{binary, wait_healthy};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Served(Vec<Child>);

impl Drop for Served {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run_line(dir: &Path, line: &str) -> anyhow::Result<(String, String)> {
    let mut words = line.split_whitespace();
    let bin = words.next().context("empty line")?;
    let out = Command::new(binary(bin)).args(words).current_dir(dir).stdin(Stdio::null()).output()?;
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    if !out.status.success() {
        bail!("`{line}` exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    }
    Ok((stdout, stderr))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?
        } else {
            std::fs::copy(e.path(), target).map(|_| ())?
        }
    }
    Ok(())
}

#[test]
fn the_hubs_help_setup_runs_as_written_on_one_machine() -> anyhow::Result<()> {
    let help = run_line(Path::new("."), "jianka-hub --help")?.0;
    let lines: Vec<&str> =
        help.lines().map(str::trim).filter(|l| l.starts_with("jianka-hub ") || l.starts_with("jianka-node ")).collect();
    ensure!(lines.len() >= 8, "the help's setup has {} command lines:\n{help}", lines.len());
    let root = tempfile::tempdir()?;
    let dir = root.path();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config"), &dir.join("config"))?;

    let (mut county_key, mut node_key) = (String::new(), String::new());
    let mut served = Served(Vec::new());
    for line in lines {
        let line = line.replace("<county key>", &county_key).replace("<node key>", &node_key);
        if line.contains(" serve ") {
            let mut words = line.split_whitespace();
            let bin = words.next().context("empty line")?;
            let log = std::fs::File::create(dir.join(format!("serve-{}.log", served.0.len())))?;
            served.0.push(
                Command::new(binary(bin)).args(words).current_dir(dir).stdout(log.try_clone()?).stderr(log).spawn()?,
            );
            continue;
        }
        let (stdout, stderr) = run_line(dir, &line)?;
        if line.starts_with("jianka-hub init") && line.contains("--region 420322") {
            county_key = stdout.trim().to_string();
            ensure!(stderr.contains("copied"), "init says what it copied: {stderr}");
            ensure!(stderr.contains(&county_key), "the key is named where it is asked for: {stderr}");
        }
        if line.starts_with("jianka-node init") {
            node_key = stdout
                .lines()
                .find_map(|l| l.strip_prefix("public_key "))
                .context("node init prints its public key")?
                .to_string();
            ensure!(stderr.contains("--config"), "the enroll line it prints is complete: {stderr}");
        }
    }
    ensure!(served.0.len() == 2, "the help serves a province and a county");
    // The help's ports: the province on 7001, the county on 7002.
    wait_healthy("http://127.0.0.1:7001", Duration::from_secs(20))?;
    wait_healthy("http://127.0.0.1:7002", Duration::from_secs(20))?;
    // The county's profile and quotas were copied next to its hub.toml.
    ensure!(dir.join("county/hubei-2014.toml").is_file() && dir.join("county/quotas.example.toml").is_file());

    // What the setup built works: a township's first sync, the county's forward to the province.
    let (out, _) = run_line(dir, "jianka-node --config town/node.toml sync")?;
    ensure!(out.contains("sync ok"), "{out}");
    let (out, err) = run_line(dir, "jianka-hub forward --config county/hub.toml")?;
    ensure!(out.contains("forwarded"), "{out}");
    ensure!(!err.contains("forwarding to the province"), "no progress bar when not on a terminal: {err}");
    // On an officer's terminal the forward shows its progress.
    let bin = binary("jianka-hub");
    let line = format!("{} forward --config county/hub.toml", bin.display());
    if let Ok(t) = Command::new("script").args(["-q", "-e", "-c", &line, "/dev/null"]).current_dir(dir).output() {
        let shown = String::from_utf8_lossy(&t.stdout);
        ensure!(shown.contains("forwarding to the province") && shown.contains("forwarded"), "{shown}");
    }

    // And init refuses a profile that is not there, naming it, with nothing written.
    let missing = Command::new(binary("jianka-hub"))
        .args(["init", "--region", "420323", "--dir", "other", "--profile", "profiles/nowhere.toml"])
        .current_dir(dir)
        .output()?;
    let err = String::from_utf8_lossy(&missing.stderr);
    ensure!(!missing.status.success() && err.contains("profiles/nowhere.toml"), "{err}");
    ensure!(!dir.join("other/hub.toml").exists(), "nothing written for a refused init");
    Ok(())
}
