//! Runs the real `jianka-hub` and `jianka-node` binaries as a user would: each in its own
//! directory with its own SQLite file, hubs listening on loopback, killable with SIGKILL.

use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory holding this build's binaries (target/debug or target/release).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary, built once per test process with the same profile; or, when
/// `JIANKA_BIN_DIR` is set, taken from that directory as is (to test installed binaries).
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("JIANKA_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = bin_dir();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["build", "--quiet", "-p", "jianka-node", "-p", "jianka-hub", "--bins"]);
        if release {
            c.arg("--release");
        }
        match c.status() {
            Ok(s) if s.success() => Ok(()),
            other => Err(format!("building the binaries failed: {other:?}")),
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    bin_dir().join(name)
}

/// A free loopback port (bound and released; the hub binds it right after).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Runs a command to completion, capturing output.
pub fn run(bin: &str, args: &[&str], envs: &[(String, String)]) -> anyhow::Result<Output> {
    let out = Command::new(binary(bin))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {bin}"))?;
    Ok(out)
}

/// Like [`run`], failing with both output streams when the exit code is not 0.
pub fn run_ok(bin: &str, args: &[&str], envs: &[(String, String)]) -> anyhow::Result<String> {
    let out = run(bin, args, envs)?;
    if !out.status.success() {
        bail!(
            "{bin} {} exited with {}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn public_key_hex(key_file: &Path) -> anyhow::Result<String> {
    let k = jianka_keyfile::Keypair::read(key_file)?;
    Ok(jianka_keyfile::public_hex(&k.public()))
}

/// A hub process (county or province) in its own directory.
pub struct Hub {
    pub region: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub envs: Vec<(String, String)>,
    child: Option<Child>,
}

impl Hub {
    /// `jianka-hub init` in `dir`; `extra` adds flags such as `--profile` and `--quotas`.
    pub fn init(dir: &Path, region: &str, extra: &[&str]) -> anyhow::Result<Hub> {
        Hub::init_with(dir, region, extra, Vec::new())
    }

    /// Like [`Hub::init`], with environment variables (e.g. `JIANKA_NOW`) for this hub's every command.
    pub fn init_with(dir: &Path, region: &str, extra: &[&str], envs: Vec<(String, String)>) -> anyhow::Result<Hub> {
        std::fs::create_dir_all(dir)?;
        let d = dir.to_str().context("utf-8 path")?;
        let mut args = vec!["init", "--region", region, "--dir", d];
        args.extend_from_slice(extra);
        run_ok("jianka-hub", &args, &envs)?;
        Ok(Hub {
            region: region.into(),
            dir: dir.to_path_buf(),
            config: dir.join("hub.toml"),
            addr: free_addr(),
            envs,
            child: None,
        })
    }

    /// A hub directory made earlier (e.g. a copy of another's), not running, on a fresh port.
    pub fn existing(dir: &Path, region: &str) -> Hub {
        Hub {
            region: region.into(),
            dir: dir.to_path_buf(),
            config: dir.join("hub.toml"),
            addr: free_addr(),
            envs: Vec::new(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config_str(&self) -> &str {
        self.config.to_str().expect("utf-8 path")
    }

    pub fn public_key(&self) -> anyhow::Result<String> {
        public_key_hex(&self.dir.join("hub.key"))
    }

    /// A hub subcommand against this hub's config.
    /// A hub subcommand against this hub's config (`--config` goes last, after any nested subcommand).
    pub fn cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--config", self.config_str()]);
        run_ok("jianka-hub", &a, &self.envs)
    }

    pub fn cmd_raw(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--config", self.config_str()]);
        run("jianka-hub", &a, &self.envs)
    }

    /// Starts a hub subcommand without waiting (to SIGKILL it mid-way).
    pub fn spawn_cmd(&self, args: &[&str]) -> anyhow::Result<Child> {
        Ok(Command::new(binary("jianka-hub"))
            .args(args)
            .args(["--config", self.config_str()])
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    }

    /// Issues a certificate for a child whose key file is `child_key`; returns the chain file.
    /// Issues this hub's signed allocation of `people` and `villages` to `child` for `year`
    /// (`allocate`, the child's weight 1 of 1) and carries it by hand: `--out`, then
    /// `install-allocation` at the child (which must have its certificate chain installed).
    pub fn allocate_to(&self, child: &Hub, year: &str, people: u64, villages: u64) -> anyhow::Result<()> {
        let dir = self.dir.join(format!("allocations-{}", child.region));
        std::fs::create_dir_all(&dir)?;
        let weights = dir.join("weights.csv");
        std::fs::write(&weights, format!("region,weight\n{},1\n", child.region))?;
        let list = dir.join("villages.csv");
        std::fs::write(&list, format!("region,villages,class\n{},{},all\n", child.region, villages.max(1) * 10))?;
        let (w, l, d) =
            (weights.to_str().context("utf-8")?, list.to_str().context("utf-8")?, dir.to_str().context("utf-8")?);
        let (people, class) = (people.to_string(), format!("all={villages}"));
        self.cmd(&[
            "allocate",
            "--year",
            year,
            "--total",
            &people,
            "--weights",
            w,
            "--villages",
            l,
            "--class-total",
            &class,
            "--out",
            d,
        ])?;
        let file = dir.join(format!("allocation-{}.json", child.region));
        child.cmd(&["install-allocation", file.to_str().context("utf-8")?])?;
        Ok(())
    }

    pub fn enroll(&self, subject: &str, child_key: &Path) -> anyhow::Result<PathBuf> {
        let out = self.dir.join(format!("chain-{subject}.json"));
        let pk = public_key_hex(child_key)?;
        self.cmd(&["enroll", "--subject", subject, "--public-key", &pk, "--out", out.to_str().context("utf-8")?])?;
        Ok(out)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("hub.log"))?;
        let child = Command::new(binary("jianka-hub"))
            .args(["serve", "--config", self.config_str(), "--listen", &self.addr.to_string()])
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        wait_healthy(&self.url(), Duration::from_secs(20))
            .with_context(|| format!("hub {} did not come up; log:\n{}", self.region, self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hub.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown handler runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `/v1/health` until it answers.
pub fn wait_healthy(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let addr: SocketAddr = url.trim_start_matches("http://").parse()?;
    while start.elapsed() < timeout {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_ok() {
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{url} not healthy after {timeout:?}")
}

/// A township node directory.
pub struct Node {
    pub township: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub envs: Vec<(String, String)>,
}

impl Node {
    pub fn init(dir: &Path, township: &str, hub_url: &str) -> anyhow::Result<Node> {
        Node::init_with(dir, township, hub_url, Vec::new())
    }

    /// Like [`Node::init`], with environment variables (e.g. `JIANKA_NOW`) for this node's every command.
    pub fn init_with(dir: &Path, township: &str, hub_url: &str, envs: Vec<(String, String)>) -> anyhow::Result<Node> {
        std::fs::create_dir_all(dir.parent().unwrap_or(dir))?;
        let d = dir.to_str().context("utf-8 path")?;
        run_ok("jianka-node", &["init", "--dir", d, "--township", township, "--hub", hub_url], &envs)?;
        Ok(Node { township: township.into(), dir: dir.to_path_buf(), config: dir.join("node.toml"), envs })
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("node.key")
    }

    pub fn config_str(&self) -> &str {
        self.config.to_str().expect("utf-8 path")
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["--config", self.config_str()];
        a.extend_from_slice(args);
        a
    }

    pub fn cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        run_ok("jianka-node", &self.args(args), &self.envs)
    }

    pub fn cmd_raw(&self, args: &[&str]) -> anyhow::Result<Output> {
        run("jianka-node", &self.args(args), &self.envs)
    }

    /// Starts a command without waiting (to SIGKILL it mid-way).
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<Child> {
        Ok(Command::new(binary("jianka-node"))
            .args(self.args(args))
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    }

    /// Points the node at another hub URL (e.g. through a fault proxy) by editing `hub_url` in its config.
    pub fn set_hub_url(&self, url: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.config)?;
        let mut doc: toml::Table = toml::from_str(&text)?;
        anyhow::ensure!(doc.contains_key("hub_url"), "{} has no hub_url", self.config.display());
        doc.insert("hub_url".into(), toml::Value::String(url.into()));
        std::fs::write(&self.config, toml::to_string(&doc)?)?;
        Ok(())
    }
}
