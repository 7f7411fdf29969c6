//! Step 2, the load: what merging a change set reads from the database, read before the merge
//! starts (the merge runs while the database writes, so it may not query).

use crate::error::HubError;
use crate::ingest::moves::{CompletedMove, PendingMove};
use crate::ingest::moves::{completed_moves_of, pending_moves};
use crate::ingest::outcome::IngestOutcome;
use crate::ingest::recheck::Recheck;
use crate::merge::Text;
use crate::record::StoredRecord;
use crate::record::{HashMap, HashSet};
use crate::record::{MOVED_FROM, key_of, storage_key};
use crate::state::Hub;
use crate::store::{WriteTx, while_running};
use crate::years;
use jianka_shared::changeset::Op;
use jianka_shared::domain::Member;
use jianka_shared::protocol::YearState;
use jianka_shared::{RecordKey, RecordKind, RegionCode, Tier, Year};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

impl Hub {
    /// Reads everything the merge of `ops` needs (stored rows, year states, referenced
    /// households, pending moves, stored members), so the merge itself never queries.
    pub(crate) async fn load(
        &self,
        tx: &mut dyn WriteTx,
        writer: &RegionCode,
        ops: &[Op],
        years: YearStates,
        fx: &mut IngestOutcome,
    ) -> Result<MergeContext, HubError> {
        // The members stored in the households this change set writes (county) are asked for
        // first: the database looks them up while the keys are worked out here.
        let mut keys: Option<Vec<String>> = None;
        let mut stored_members = Vec::new();
        for (year, ids) in self.reexamined_households(ops) {
            let read = tx.live_members(year, &ids);
            let found = while_running(read, || {
                keys.get_or_insert_with(|| unique_keys(ops));
            });
            stored_members.extend(found.await?);
        }
        let keys = keys.unwrap_or_else(|| unique_keys(ops));
        fx.rows.reserve(keys.len());
        fx.member_records.reserve(keys.len());
        load_rows(tx, &keys, &mut fx.rows).await?;
        let YearStates { states, carry } = years;
        fx.carry_years = carry;
        // Kept only when needed: the carry compares the next year's values with these.
        for (k, r) in &fx.rows {
            if fx.carry_years.contains(&r.key.year) {
                fx.before.insert(k.clone(), r.fields.clone());
            }
        }
        // Households the authority checks look at that the change set does not carry: those its
        // members belong to or join, and those its moved households left.
        let referenced: Vec<String> = {
            // Households the change set carries are merged from its own ops (and loaded above
            // when stored): only the others are read here.
            let mut seen: HashSet<(Year, &str)> = ops
                .iter()
                .map(Op::key)
                .filter(|k| k.kind == RecordKind::Household)
                .map(|k| (k.year, k.id.as_str()))
                .collect();
            let mut out = Vec::new();
            for op in ops {
                let key = op.key();
                let named = match key.kind {
                    RecordKind::Member => op.field("household"),
                    RecordKind::Household => op.field(MOVED_FROM),
                    RecordKind::Village | RecordKind::Assistance => None,
                };
                let stored = match key.kind {
                    RecordKind::Member if !fx.rows.is_empty() => fx.rows.get(&storage_key(key)).map(|r| r.hh.as_str()),
                    _ => None,
                };
                for hh in named.into_iter().chain(stored).filter(|h| !h.is_empty()) {
                    if seen.insert((key.year, hh)) {
                        let hk = key_of(RecordKind::Household, key.year, hh);
                        if !fx.rows.contains_key(&hk) {
                            out.push(hk);
                        }
                    }
                }
            }
            out
        };
        let mut households = HashMap::default();
        load_rows(tx, &referenced, &mut households).await?;
        // Cross-county moves are completed where both counties are below: the province, or a prefecture.
        let above_county = self.region().tier() != Tier::County;
        let ctx = MergeContext {
            today: self.today(),
            writer_code: Text::new(writer.as_str()),
            states,
            // Cross-county moves waiting here for the departure side, by member key.
            moves: if above_county { pending_moves(tx, ops).await? } else { HashMap::default() },
            completed: if above_county { completed_moves_of(tx, ops).await? } else { HashMap::default() },
            households,
            recheck: self.load_recheck(tx, ops).await?,
        };
        // Members already stored in the households this change set touches, read before any of its
        // own rows are written (re-examination counts them).
        fx.stored_members = members_by_household(stored_members, &fx.rows);
        if self.region().tier() == Tier::County {
            self.read_before_writes(tx, ops, fx).await?;
        }
        fx.rev = tx.next_rev().await?;
        Ok(ctx)
    }

    /// Each year's state (and the regions it is reopened for) and, at a county, the frozen
    /// years whose accepted changes carry into the next year (see [`Hub::carry_into_next_year`]).
    pub(crate) async fn year_states(&self, years: impl Iterator<Item = Year>) -> Result<YearStates, HubError> {
        let years: BTreeSet<Year> = years.collect();
        let mut out = YearStates::default();
        for y in years {
            let (state, reopened) =
                years::effective_state(&*self.store, y, self.today(), self.profile.as_ref()).await?;
            if self.region().tier() == Tier::County
                && state != YearState::Open
                && years::carries_into_next(&*self.store, y, self.today(), self.profile.as_ref()).await?
            {
                out.carry.insert(y);
            }
            out.states.insert(y, (state, reopened));
        }
        Ok(out)
    }

    /// The households this change set writes, by year: at a county, those that can come up for
    /// re-examination, whose stored members it counts (none elsewhere). Each household once,
    /// however many of its ops the change set carries.
    fn reexamined_households(&self, ops: &[Op]) -> BTreeMap<Year, Vec<String>> {
        if self.region().tier() != Tier::County {
            return BTreeMap::new();
        }
        let mut by_year: BTreeMap<Year, BTreeSet<&str>> = BTreeMap::new();
        for op in ops.iter().filter(|o| o.key().kind == RecordKind::Household) {
            by_year.entry(op.key().year).or_default().insert(op.key().id.as_str());
        }
        by_year.into_iter().map(|(year, ids)| (year, ids.into_iter().map(str::to_string).collect())).collect()
    }
}

/// Every record `ops` writes, by storage key, each once.
fn unique_keys(ops: &[Op]) -> Vec<String> {
    let mut seen: HashSet<&RecordKey> = HashSet::default();
    ops.iter().map(Op::key).filter(|k| seen.insert(*k)).map(storage_key).collect()
}

/// Stored live members by year and household, parsed (or why not), leaving out the records this
/// change set holds (`rows`; re-examination adds its own versions of those).
fn members_by_household(
    stored: Vec<StoredRecord>,
    rows: &HashMap<String, Arc<StoredRecord>>,
) -> HashMap<(Year, String), Vec<Result<Member, String>>> {
    let mut out: HashMap<(Year, String), Vec<Result<Member, String>>> = HashMap::default();
    for row in stored {
        if rows.contains_key(&storage_key(&row.key)) {
            continue;
        }
        out.entry((row.key.year, row.hh.clone())).or_default().push(row.to_member());
    }
    out
}

/// What merging a change set reads from the database, loaded before the merge starts (the merge
/// itself runs while the database writes, so it may not query).
pub(crate) struct MergeContext {
    pub(crate) today: chrono::NaiveDate,
    pub(crate) writer_code: Text,
    /// Each year's state and the regions it is reopened for.
    pub(crate) states: HashMap<Year, (YearState, Vec<RegionCode>)>,
    pub(crate) moves: HashMap<String, PendingMove>,
    pub(crate) completed: HashMap<String, Vec<CompletedMove>>,
    /// Stored households that members in this change set belong to or join, and households
    /// that moved households name, when the change set does not carry them itself.
    pub(crate) households: HashMap<String, Arc<StoredRecord>>,
    /// Above a county: the county's admissions counted against what this hub issued it.
    pub(crate) recheck: Option<Recheck>,
}

/// Year states read before an ingest's transaction (see [`Hub::year_states`]).
#[derive(Default)]
pub(crate) struct YearStates {
    pub(crate) states: HashMap<Year, (YearState, Vec<RegionCode>)>,
    pub(crate) carry: HashSet<Year>,
}

/// Reads the stored records (deleted ones too) under `keys` into `into`, by storage key.
pub(crate) async fn load_rows(
    tx: &mut dyn WriteTx,
    keys: &[String],
    into: &mut HashMap<String, Arc<StoredRecord>>,
) -> Result<(), HubError> {
    if keys.is_empty() {
        return Ok(());
    }
    for r in tx.records(keys).await? {
        into.insert(storage_key(&r.key), Arc::new(r));
    }
    Ok(())
}
