//! Setup shared by the black-box tests.
#![allow(dead_code)] // each test binary uses its own part of the setup

use jianka_shared::domain::Status;
use jianka_tests::generate::{Generator, write_csv};
use jianka_tests::harness::{Hub, Node};

/// Province → county → township, enrolled through the real CLIs.
pub fn county_with_township(root: &std::path::Path, township: &str) -> anyhow::Result<(Hub, Hub, Node)> {
    let county_code = &township[..6];
    let mut province = Hub::init(&root.join("province"), &township[..2], &[])?;
    let mut county = Hub::init(&root.join("county"), county_code, &["--parent-url", &province.url()])?;
    let county_chain = province.enroll(county_code, &county.dir.join("hub.key"))?;
    county.cmd(&["install-chain", county_chain.to_str().unwrap()])?;
    province.start()?;
    county.start()?;
    let node = Node::init(&root.join("node"), township, &county.url())?;
    let chain = county.enroll(township, &node.key_file())?;
    node.cmd(&["trust", chain.to_str().unwrap()])?;
    Ok((province, county, node))
}

pub fn households_csv(dir: &std::path::Path, villages: &[&str], n: u32, seed: u64) -> std::path::PathBuf {
    let mut g = Generator::new(seed, 2014);
    let hs: Vec<_> =
        (0..n).map(|i| g.household(villages[i as usize % villages.len()], i + 1, Status::Applied)).collect();
    let path = dir.join("扶贫手册.csv");
    write_csv(std::fs::File::create(&path).unwrap(), &hs).unwrap();
    path
}
