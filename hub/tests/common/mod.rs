//! Test harness: real hubs (`serve` on port 0, real SQLite files or a fresh PostgreSQL database)
//! and a signing client that plays a township node.
#![allow(dead_code)]

use chrono::{NaiveDate, TimeZone, Utc};
use ed25519_dalek::SigningKey;
use jianka_hub::{Hub, HubConfig, ManualClock, admin};
use jianka_shared::{
    Hlc, RegionCode, Yuan,
    allocation::Share,
    changeset::{Draft, FieldWrite, Op},
    domain::{Household, Member, Status},
    labels::*,
    protocol::*,
    trust,
};
use std::path::Path;
use std::sync::Arc;

/// Each named `async fn name(pg: bool)` as two tests, `sqlite::name` and `postgres::name` (the
/// second runs when JIANKA_TEST_PG is set).
#[allow(unused_macros)]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test] async fn $name() { super::$name(false).await; })* }
        mod postgres { $(#[tokio::test] async fn $name() { if super::pg_available() { super::$name(true).await; } })* }
    };
}

pub fn r(s: &str) -> RegionCode {
    RegionCode::parse(s).unwrap()
}

pub fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2014, 9, 1, 2, 0, 0).unwrap()
}

/// A fresh database URL: a SQLite file in `dir`, or a new PostgreSQL database when `pg` is set.
pub async fn database_url(dir: &Path, pg: bool) -> String {
    if !pg {
        return "sqlite://hub.db".to_string();
    }
    let base = std::env::var("JIANKA_TEST_PG").expect("JIANKA_TEST_PG");
    sqlx::any::install_default_drivers();
    // Unique across test processes running at once and across runs. A test's hub may still be
    // open when the test ends, so its database is kept until a later test process finds it left
    // by one that has exited (see `drop_left_behind`).
    let name = format!("{DB_PREFIX}{}_{}", std::process::id(), rand_suffix());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&base).await.unwrap();
    drop_left_behind(&mut conn).await;
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    let _ = dir;
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

const DB_PREFIX: &str = "jianka_hub_";

/// Drops, once per test process, the databases of test processes that have exited (their pid,
/// in the name, is no longer running): databases of tests running now are left alone.
async fn drop_left_behind(conn: &mut sqlx::AnyConnection) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let names: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT datname::text FROM pg_database WHERE datname LIKE '{DB_PREFIX}%'"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        for name in names {
            let pid = name[DB_PREFIX.len()..].split('_').next().unwrap_or_default();
            let exited = pid.parse::<u32>().is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists());
            if exited && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::Executor::execute(&mut *conn, sqlx::AssertSqlSafe(sql)).await;
            }
        }
    })
    .await;
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{nanos}", N.fetch_add(1, Ordering::SeqCst))
}

pub fn pg_available() -> bool {
    match std::env::var("JIANKA_TEST_PG") {
        Ok(v) if !v.is_empty() => true,
        _ => {
            eprintln!("JIANKA_TEST_PG is not set: skipping the PostgreSQL run of this test");
            false
        }
    }
}

pub struct TestHub {
    pub hub: Arc<Hub>,
    pub url: String,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestHub {
    /// A connection pool of its own to the hub's database, for tests that look at (or tamper
    /// with) the tables directly.
    pub async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.hub.config().database_url()).await.unwrap()
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub struct Setup {
    pub province: TestHub,
    pub county: TestHub,
}

pub async fn start(dir: tempfile::TempDir, clock: ManualClock, extra: impl FnOnce(&mut HubConfig)) -> TestHub {
    let mut cfg = HubConfig::load(&dir.path().join("hub.toml")).unwrap();
    extra(&mut cfg);
    let hub = Arc::new(Hub::open(cfg, Arc::new(clock.clone())).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(jianka_hub::serve(listener, hub.clone(), async move {
        let _ = rx.await;
    }));
    TestHub { hub, url, clock, dir, stop: Some(tx) }
}

/// A province 42 and a county 420322 (scale control: the province allocates `people` and 3
/// villages; the county's quotas file splits them to townships).
pub async fn setup(pg: bool, people: u64, allocations: &[(&str, u64)]) -> Setup {
    setup_with(pg, people, Some(people), allocations).await
}

/// [`setup`] where the county's quotas file claims `claimed` people and the province allocates
/// `allocated` (none: the county never received an allocation).
pub async fn setup_with(pg: bool, claimed: u64, allocated: Option<u64>, allocations: &[(&str, u64)]) -> Setup {
    setup_profile(pg, HUBEI_2014, claimed, allocated, allocations).await
}

pub const HUBEI_2014: &str = include_str!("../../../config/profiles/hubei-2014.toml");
pub const MIYUN_2016: &str = include_str!("../../../config/profiles/miyun-2016.toml");

/// [`setup_with`] under the county profile `profile` (the text of its TOML file).
pub async fn setup_profile(
    pg: bool,
    profile: &str,
    claimed: u64,
    allocated: Option<u64>,
    allocations: &[(&str, u64)],
) -> Setup {
    let people = claimed;
    let clock = ManualClock::new(t0());
    let today = t0().date_naive();
    let pdir = tempfile::tempdir().unwrap();
    let cdir = tempfile::tempdir().unwrap();
    let pdb = database_url(pdir.path(), pg).await;
    let cdb = database_url(cdir.path(), pg).await;
    admin::init(
        &admin::InitOptions {
            region: r("42"),
            dir: pdir.path().into(),
            parent_url: None,
            profile: None,
            quotas: None,
            database: Some(pdb),
            listen: None,
        },
        today,
    )
    .unwrap();
    let mut quotas =
        format!("[[counties]]\ncounty = \"420322\"\npeople = {people}\nvillages = 3\n[counties.townships]\n");
    for (t, n) in allocations {
        quotas.push_str(&format!("\"{t}\" = {n}\n"));
    }
    std::fs::write(cdir.path().join("quotas.toml"), quotas).unwrap();
    std::fs::write(cdir.path().join("profile.toml"), profile).unwrap();
    let county_pk = admin::init(
        &admin::InitOptions {
            region: r("420322"),
            dir: cdir.path().into(),
            parent_url: Some("http://placeholder".into()),
            profile: Some("profile.toml".into()),
            quotas: Some("quotas.toml".into()),
            database: Some(cdb),
            listen: None,
        },
        today,
    )
    .unwrap();
    let province = start(pdir, clock.clone(), |_| {}).await;
    let chain = province.hub.enroll(&r("420322"), &county_pk.public_key, None).await.unwrap();
    let chain_path = province.dir.path().join("county-chain.json");
    jianka_keyfile::write_chain(&chain_path, &chain).unwrap();
    let ccfg = HubConfig::load(&cdir.path().join("hub.toml")).unwrap();
    admin::install_chain(&ccfg, &chain_path, today).unwrap();
    let purl = province.url.clone();
    let county = start(cdir, clock, move |c| c.parent_url = Some(purl)).await;
    // The county's ceiling is the one the province signs (its quotas file only splits it).
    if let Some(people) = allocated {
        allocate(&province, "420322", people, 3).await;
        let pulled = county.hub.pull_parent_feedback().await.unwrap();
        assert_eq!(pulled.allocations, 1, "the county received its allocation");
    }
    Setup { province, county }
}

/// The province's signed allocation of `people` and `villages` to `county` for 2014.
pub async fn allocate(province: &TestHub, county: &str, people: u64, villages: u64) {
    let split = std::collections::BTreeMap::from([(r(county), Share { people, villages })]);
    province.hub.allocate(2014, &split, "test").await.unwrap();
}

/// A township node: key, region, its own change-set stream.
pub struct Node {
    pub region: RegionCode,
    pub key: SigningKey,
    pub seq: u64,
    pub prev: [u8; 32],
    pub url: String,
    pub client: reqwest::Client,
    pub now: i64,
}

pub async fn enroll_node(hub: &TestHub, township: &str, seed: u8) -> Node {
    let key = SigningKey::from_bytes(&[seed; 32]);
    hub.hub.enroll(&r(township), &jianka_keyfile::public_hex(&key.verifying_key()), None).await.unwrap();
    Node {
        region: r(township),
        key,
        seq: 0,
        prev: [0; 32],
        url: hub.url.clone(),
        client: reqwest::Client::new(),
        now: hub.clock.now_secs(),
    }
}

pub trait ClockExt {
    fn now_secs(&self) -> i64;
}
impl ClockExt for ManualClock {
    fn now_secs(&self) -> i64 {
        jianka_hub::Clock::now(self).timestamp()
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn code(&self) -> ErrorCode {
        self.json::<ApiError>().code
    }
}

impl Node {
    pub async fn request(&self, method: &str, pq: &str, body: Vec<u8>) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp =
            jianka_client::signed(&self.client, &self.key, m, &self.url, pq, body, self.now).send().await.unwrap();
        Answer { status: resp.status().as_u16(), body: resp.bytes().await.unwrap().to_vec() }
    }

    /// Seals the next change set of this node's stream (without sending it).
    pub fn seal(&mut self, ops: Vec<Op>) -> Vec<u8> {
        self.seq += 1;
        let d = Draft {
            origin: self.region.clone(),
            seq: self.seq,
            prev_hash: self.prev,
            year: 2014,
            hlc: Hlc::new(1, 0),
            ops,
        };
        let bytes = d.seal(&self.key).unwrap();
        self.prev = jianka_shared::changeset::envelope_hash(&bytes);
        bytes
    }

    pub async fn push(&mut self, ops: Vec<Op>) -> Answer {
        let bytes = self.seal(ops);
        self.request("POST", "/v1/changesets", bytes).await
    }

    pub async fn feedback(&self, since: u64) -> FeedbackPage {
        self.request("GET", &format!("/v1/feedback?since={since}"), vec![]).await.json()
    }
}

pub fn sign_headers(key: &SigningKey, method: &str, pq: &str, body: &[u8], now: i64) -> String {
    trust::sign_request(key, method, pq, body, now)
}

/// A valid household of `n` members in `village`, number `no`, at `status`; ID numbers unique by `salt`.
pub fn household(village: &str, no: u32, n: usize, salt: u32, status: Status) -> Household {
    let birth = NaiveDate::from_ymd_opt(1960 + (salt % 40) as i32, 1 + (salt % 12), 1 + (no % 28)).unwrap();
    let area = &village[..6];
    let members: Vec<Member> = (0..n)
        .map(|i| {
            let seq = ((no as usize * 7 + i * 2) % 999 + 1) as u16;
            let id = jianka_shared::IdNumber::compose(
                area,
                birth + chrono::Days::new((salt as u64 * 31 + i as u64) % 3000),
                seq,
            )
            .unwrap();
            let sex = id.sex();
            Member {
                id_number: id,
                name: format!("成员{i}"),
                relation: if i == 0 { Relation::Head } else { Relation::Son },
                sex,
                education: Education::Primary,
                schooling: None,
                health: Health::Healthy,
                labour: Labour::Ordinary,
                migrant_work: None,
                medical_insurance: true,
                pension_insurance: false,
            }
        })
        .collect();
    Household {
        year: 2014,
        village: r(village),
        number: format!("{no:04}"),
        attribute: Attribute::General,
        standard: Standard::National,
        main_cause: Cause::Illness,
        other_causes: vec![],
        income: Yuan::from_yuan(1000 * n as i64),
        income_per_capita: Yuan::from_yuan(1000),
        unsafe_housing: false,
        water_difficulty: false,
        phone: "13800000000".into(),
        bank_account: "6217000000000000".into(),
        helper_name: "张".into(),
        helper_unit: "扶贫办".into(),
        helper_phone: "0719-0000000".into(),
        helper_since: String::new(),
        status,
        members,
        facts: Default::default(),
    }
}

pub fn ops_of(h: &Household, version: u64) -> Vec<Op> {
    h.to_records()
        .into_iter()
        .map(|rec| Op::Upsert {
            key: rec.key,
            fields: rec
                .fields
                .into_iter()
                .map(|(name, value)| FieldWrite {
                    name: name.into(),
                    value: value.into(),
                    version: Hlc(version),
                    base: Hlc::ZERO,
                })
                .collect(),
        })
        .collect()
}

pub fn accepted(a: &Answer) -> (u64, Vec<Rejection>) {
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    match a.json::<PushOutcome>() {
        PushOutcome::Accepted { applied, rejected, .. } => (applied, rejected),
        other => panic!("expected Accepted, got {other:?}"),
    }
}

pub fn _status_used(_: Status) {}

/// Runs a storage test on SQLite, and on PostgreSQL when JIANKA_TEST_PG is set.
#[macro_export]
macro_rules! both_backends {
    ($body:ident, $sqlite:ident, $pg:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $body(false).await;
        }
        #[tokio::test]
        async fn $pg() {
            if pg_available() {
                $body(true).await;
            }
        }
    };
}

/// An upsert of `fields` at `version`, edited from `base`.
pub fn upsert_from(key: jianka_shared::RecordKey, fields: &[(&str, &str)], version: u64, base: u64) -> Op {
    Op::Upsert {
        key,
        fields: fields
            .iter()
            .map(|(n, v)| FieldWrite { name: (*n).into(), value: (*v).into(), version: Hlc(version), base: Hlc(base) })
            .collect(),
    }
}

/// An upsert of `fields` at `version` of a record the writer had not seen (base zero).
pub fn upsert(key: jianka_shared::RecordKey, fields: &[(&str, &str)], version: u64) -> Op {
    upsert_from(key, fields, version, 0)
}

/// A poor village's 登记表 at `status`, as its township sends it.
pub fn village_op(code: &str, status: Status, version: u64) -> Op {
    let f = |name: &str, value: String| FieldWrite {
        name: name.into(),
        value: value.into(),
        version: Hlc(version),
        base: Hlc::ZERO,
    };
    Op::Upsert {
        key: jianka_shared::RecordKey::new(jianka_shared::RecordKind::Village, 2014, code),
        fields: vec![
            f("name", format!("村{code}")),
            f("households", "300".into()),
            f("population", "1000".into()),
            f("poor_households", "90".into()),
            f("poor_population", "300".into()),
            f("income_per_capita", "3000".into()),
            f("collective_income", "0".into()),
            f("status", format!("{status:?}")),
        ],
    }
}
