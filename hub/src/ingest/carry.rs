//! Step 5, the carry: what an update window (or a reopening) accepts into a frozen year goes on
//! into the next year, which New Year built as a copy of it.

use crate::error::HubError;
use crate::feedback::removed_feedback;
use crate::ingest::load::load_rows;
use crate::ingest::outcome::IngestOutcome;
use crate::merge::{FieldState, Fields, Text};
use crate::record::{HashMap, HashSet};
use crate::record::{StoredRecord, audit_subject, storage_key};
use crate::state::Hub;
use crate::store::WriteTx;
use jianka_shared::domain::Status;
use jianka_shared::protocol::Correction;
use jianka_shared::{Hlc, RecordKey, RecordKind, Year};
use std::collections::BTreeMap;
use std::sync::Arc;

impl Hub {
    /// Adjustments accepted into a frozen year (its January window, or a reopening) carry into
    /// the next year, which New Year built as a copy of it: exits and refusals leave the next year
    /// (with their members), deaths are deleted there, births, moves and admitted new entries
    /// arrive there. A field the next year has already changed on its own keeps its own value
    /// (it is the newer record); the frozen year's signed snapshot is not touched. The next
    /// year's quota ledger follows the households that become, or stop being, recognised there.
    pub(crate) async fn carry_into_next_year(
        &self,
        tx: &mut dyn WriteTx,
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        if fx.carry_years.is_empty() {
            return Ok(());
        }
        let version = fx.move_version;
        let mut seen = HashSet::default();
        let mut sources: Vec<String> = fx
            .dirty
            .iter()
            .filter(|k| fx.rows.get(*k).is_some_and(|r| fx.carry_years.contains(&r.key.year)))
            .filter(|k| seen.insert((*k).clone()))
            .cloned()
            .collect();
        // A member's fate follows its household's: load the households not in this change set.
        let mut households: HashMap<String, Arc<StoredRecord>> = HashMap::default();
        let missing_hh: Vec<String> = sources
            .iter()
            .filter_map(|k| fx.rows.get(k))
            .filter(|r| r.key.kind == RecordKind::Member && !r.hh.is_empty())
            .map(|r| storage_key(&RecordKey::new(RecordKind::Household, r.key.year, r.hh.clone())))
            .filter(|k| !fx.rows.contains_key(k))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        load_rows(tx, &missing_hh, &mut households).await?;
        let carried_household = |h: &StoredRecord| {
            !h.deleted
                && !matches!(h.field("status").and_then(Status::parse), Some(Status::NotRecognised | Status::Exited))
        };
        // Households that arrive in the next year bring their members, also those sent earlier.
        let next_key = |r: &StoredRecord| RecordKey { year: r.key.year + 1, ..r.key.clone() };
        let mut next: HashMap<String, Arc<StoredRecord>> = HashMap::default();
        let next_keys: Vec<String> =
            sources.iter().filter_map(|k| fx.rows.get(k)).map(|r| storage_key(&next_key(r))).collect();
        load_rows(tx, &next_keys, &mut next).await?;
        let live_next = |fx: &IngestOutcome, next: &HashMap<String, Arc<StoredRecord>>, nk: &str| {
            fx.rows.get(nk).or_else(|| next.get(nk)).filter(|r| !r.deleted).map(|r| StoredRecord::clone(r))
        };
        let arriving: Vec<(Year, String)> = sources
            .iter()
            .filter_map(|k| fx.rows.get(k))
            .filter(|r| r.key.kind == RecordKind::Household && carried_household(r))
            .filter(|r| live_next(fx, &next, &storage_key(&next_key(r))).is_none())
            .map(|r| (r.key.year, r.key.id.clone()))
            .collect();
        for (year, id) in &arriving {
            for row in tx.live_members(*year, std::slice::from_ref(id)).await? {
                let k = storage_key(&row.key);
                if seen.insert(k.clone()) {
                    let nk = storage_key(&next_key(&row));
                    fx.rows.insert(k.clone(), Arc::new(row));
                    load_rows(tx, &[nk], &mut next).await?;
                    sources.push(k);
                }
            }
        }
        // Households first, so members see their household's fate in this same pass.
        sources.sort_by_key(|k| fx.rows.get(k).map(|r| r.key.kind != RecordKind::Household));
        let quota = self.scale_controlled();
        let mut ledger: Vec<(String, Year, i64)> = Vec::new();
        let mut leaving: Vec<(Year, String)> = Vec::new();
        // Next-year records the carry removes, by township, sent down as `Removed`.
        let mut removed: BTreeMap<String, Vec<RecordKey>> = BTreeMap::new();
        for k in sources {
            let Some(src) = fx.rows.get(&k).cloned() else { continue };
            let nkey = next_key(&src);
            let nk = storage_key(&nkey);
            let carried = match src.key.kind {
                RecordKind::Household => carried_household(&src),
                RecordKind::Member => {
                    let hk = storage_key(&RecordKey::new(RecordKind::Household, src.key.year, src.hh.clone()));
                    !src.deleted
                        && fx.rows.get(&hk).or_else(|| households.get(&hk)).is_some_and(|r| carried_household(r))
                }
                RecordKind::Village => !src.deleted,
                // Each year's 帮扶 entries are that year's: the next begins with none.
                RecordKind::Assistance => false,
            };
            let existing = live_next(fx, &next, &nk);
            let was_recognised = existing.as_ref().is_some_and(crate::record::is_recognised);
            let people = |r: &StoredRecord| r.field("members").and_then(|m| m.parse::<i64>().ok()).unwrap_or(0);
            let township = src.region.get(..9).unwrap_or(&src.region).to_string();
            if !carried {
                let Some(mut gone) = existing else { continue };
                let old: Vec<(&str, &str)> = gone.fields.iter().map(|(n, f)| (n.as_str(), f.value())).collect();
                fx.changes.record::<_, &str>(&audit_subject(&nkey), &old, &[]);
                removed.entry(township.clone()).or_default().push(nkey.clone());
                if src.key.kind == RecordKind::Household {
                    leaving.push((nkey.year, nkey.id.clone()));
                    if quota && was_recognised {
                        ledger.push((township, nkey.year, -people(&gone)));
                    }
                }
                gone.deleted = true;
                fx.rows.insert(nk.clone(), Arc::new(gone));
                fx.dirty.push(nk);
                continue;
            }
            let before = fx.before.get(&k);
            let mut row = existing.unwrap_or_else(|| StoredRecord {
                key: nkey.clone(),
                region: src.region.clone(),
                hh: src.hh.clone(),
                fields: Fields::new(),
                deleted: false,
            });
            let mut old: Vec<(&str, Text)> = Vec::new();
            let mut new: Vec<(&str, &str)> = Vec::new();
            for (name, f) in &src.fields {
                let cur = row.fields.get(name).map(|c| c.0.as_str());
                if cur == Some(f.0.as_str()) {
                    continue;
                }
                // Changed in the next year since New Year: that newer value stands.
                let untouched = cur.is_none() || cur == before.and_then(|b| b.get(name)).map(|b| b.0.as_str());
                if !untouched {
                    continue;
                }
                new.push((name, &f.0));
                if let Some(prev) =
                    row.fields.insert(name.clone(), FieldState(f.0.clone(), f.1.max(version), f.2.clone()))
                {
                    old.push((name, prev.0));
                }
            }
            if new.is_empty() {
                continue;
            }
            fx.changes.record(&audit_subject(&nkey), &old, &new);
            // The township holds the next year as the county carried it: send the change down.
            let values: Vec<(String, String)> = new.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let newest = new.iter().filter_map(|(n, _)| row.fields.get(*n)).map(|f| f.1).max().unwrap_or(version);
            fx.corrections.push((township.clone(), Correction { key: nkey.clone(), values, version: Hlc(newest) }));
            match src.key.kind {
                RecordKind::Member => {
                    row.hh = row.field("household").unwrap_or_default().to_string();
                    row.region = row.field("village").unwrap_or(&row.region).to_string();
                }
                RecordKind::Household => {
                    let now_recognised = crate::record::is_recognised(&row);
                    if quota && now_recognised != was_recognised {
                        let n = people(&row);
                        ledger.push((township, nkey.year, if now_recognised { n } else { -n }));
                    }
                }
                RecordKind::Village | RecordKind::Assistance => {}
            }
            fx.rows.insert(nk.clone(), Arc::new(row));
            fx.dirty.push(nk);
        }
        // Members of households that left the next year leave with them.
        for (year, id) in leaving {
            for mut m in tx.live_members(year, std::slice::from_ref(&id)).await? {
                let k = storage_key(&m.key);
                if fx.rows.get(&k).is_some_and(|m| m.deleted || m.hh != id) {
                    continue;
                }
                m.deleted = true;
                fx.changes.record::<_, &str>(&audit_subject(&m.key), &[("household", id.as_str())], &[]);
                removed.entry(m.region.get(..9).unwrap_or(&m.region).to_string()).or_default().push(m.key.clone());
                fx.rows.insert(k.clone(), Arc::new(m));
                fx.dirty.push(k);
            }
        }
        for (township, keys) in removed {
            fx.feedback.extend(removed_feedback(&township, &keys, Hlc(version)));
        }
        let county = self.region().to_string();
        for (township, year, n) in ledger {
            for scope in [county.as_str(), township.as_str()] {
                tx.quota_used(scope, year).await?;
                tx.quota_add(scope, year, n).await?;
            }
        }
        Ok(())
    }
}
