//! No identity number, phone or bank account in clear where it does not belong: a township and
//! its county go through a registration with every kind of mistake, and everything public they
//! print — the hubs' logs, every command's output and errors, the reports, the notice lists and a
//! masked export — is scanned for each person's number, each phone and each account, in full.

mod common;

use common::county_with_township;
use jianka_shared::domain::{Household, Status};
use jianka_tests::generate::{Generator, write_csv};
use jianka_tests::harness::Node;

/// Every personal number of `hs`, as it would stand in clear.
fn secrets(hs: &[Household]) -> Vec<String> {
    let mut out = Vec::new();
    for h in hs {
        out.push(h.phone.clone());
        out.push(h.bank_account.clone());
        out.push(h.helper_phone.clone());
        out.extend(h.members.iter().map(|m| m.id_number.as_str().to_string()));
    }
    out.retain(|s| s.len() >= 11);
    out
}

fn run(node: &Node, args: &[&str], printed: &mut String) {
    let out = node.cmd_raw(args).unwrap();
    printed.push_str(&String::from_utf8_lossy(&out.stdout));
    printed.push_str(&String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_public_prints_a_personal_number_in_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let (province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    let mut g = Generator::new(99, 2014);
    let mut hs: Vec<Household> =
        (0..40).map(|i| g.household(["420322105200", "420322105201"][i % 2], i as u32 + 1, Status::Applied)).collect();
    for (i, h) in hs.iter_mut().enumerate() {
        h.phone = format!("1390719{i:04}");
        h.bank_account = format!("621700{i:013}");
        h.helper_phone = format!("1360719{i:04}");
    }
    let good = tmp.path().join("good.csv");
    write_csv(std::fs::File::create(&good).unwrap(), &hs).unwrap();
    // A file with mistakes: a person twice, a number with a wrong check digit, a member of an
    // unknown relation, each reported with the row.
    let mut bad = hs[..6].to_vec();
    let twice = bad[0].members[0].clone();
    bad[1].members.push(twice);
    let id = bad[2].members[0].id_number.as_str().to_string();
    let wrong = format!("{}{}", &id[..17], if id.ends_with('1') { '2' } else { '1' });
    let bad_path = tmp.path().join("bad.csv");
    write_csv(std::fs::File::create(&bad_path).unwrap(), &bad).unwrap();
    let text = std::fs::read_to_string(&bad_path).unwrap().replacen(&id, &wrong, 1);
    std::fs::write(&bad_path, text).unwrap();
    let mut all = secrets(&hs);
    all.push(wrong);

    let mut printed = String::new();
    tokio::task::block_in_place(|| {
        run(&node, &["import", bad_path.to_str().unwrap(), "--year", "2014"], &mut printed);
        run(&node, &["import", good.to_str().unwrap(), "--year", "2014"], &mut printed);
        for (date, extra) in [("2014-06-01", &["--minutes", "评议通过"][..]), ("2014-06-02", &[]), ("2014-06-09", &[])]
        {
            let args = [&["workflow", "advance", "--all", "--year", "2014", "--date", date][..], extra].concat();
            run(&node, &args, &mut printed);
        }
        let list = tmp.path().join("村公示.csv");
        run(
            &node,
            &["notice", "--step", "村公示", "--year", "2014", "--format", "csv", "--out", list.to_str().unwrap()],
            &mut printed,
        );
        printed.push_str(&std::fs::read_to_string(&list).unwrap());
        for args in [
            &["workflow", "advance", "--all", "--year", "2014", "--date", "2014-06-10"][..],
            &["workflow", "advance", "--all", "--year", "2014", "--date", "2014-06-17"],
            &["sync"],
            &["sync"],
            &["status"],
            &["status", "--json"],
            &["household", "list", "--year", "2014"],
            &["workflow", "show", &hs[0].id(), "--year", "2014"],
            &["verify", "--year", "2014"],
        ] {
            run(&node, args, &mut printed);
        }
        let masked = tmp.path().join("public.csv");
        run(&node, &["export", "--year", "2014", "--out", masked.to_str().unwrap()], &mut printed);
        printed.push_str(&std::fs::read_to_string(&masked).unwrap());
        let notice = tmp.path().join("notice.html");
        run(
            &node,
            &["notice", "--step", "乡镇公示", "--year", "2014", "--out", notice.to_str().unwrap()],
            &mut printed,
        );
        printed.push_str(&std::fs::read_to_string(&notice).unwrap_or_default());
        for args in [&["report"][..], &["report", "--json"], &["conflicts", "list"], &["audit", "verify"]] {
            let out = county.cmd_raw(args).unwrap();
            printed.push_str(&String::from_utf8_lossy(&out.stdout));
            printed.push_str(&String::from_utf8_lossy(&out.stderr));
        }
    });
    printed.push_str(&county.log());
    printed.push_str(&province.log());
    assert!(
        printed.contains("rule 2") && printed.contains("乡镇公示"),
        "the mistakes and the lists were printed:\n{printed}"
    );
    // The numbers were there to leak: they stand masked.
    assert!(printed.contains(&hs[0].members[0].id_number.masked()), "{printed}");
    let leaked: Vec<String> =
        all.iter().filter(|s| printed.contains(s.as_str())).map(|s| jianka_shared::id_number::mask(s)).collect();
    assert!(leaked.is_empty(), "in clear: {leaked:?}");
}
