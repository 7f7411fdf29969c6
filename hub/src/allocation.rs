//! The allocations a hub holds (规模控制 from above) and the ceilings they put in force:
//! its own, received from its parent and verified through its certificate chain; those it
//! issued to its children, signed by its own key; and those a child prefecture filed with it
//! (备案). Nothing else sets a ceiling: a county's quotas file may split the county's number
//! to townships, never raise it.
//!
//! The book is kept in memory and refreshed from the store before every ingest (the store is
//! the truth; another process, `install-allocation`, may have added to it). Each row is verified
//! once, when first seen; a row that does not verify is left out and logged, so a tampered
//! table lowers what is allowed, never raises it.

use crate::audit::AuditEntry;
use crate::error::HubError;
use crate::feedback::push_feedback;
use crate::state::Hub;
use crate::store::{AllocationRow, WriteTx};
use anyhow::{Context, bail};
use jianka_shared::allocation::{self, Allocation, AllocationError, Share, SignedAllocation};
use jianka_shared::profile::CountyQuota;
use jianka_shared::protocol::{ErrorCode, Feedback};
use jianka_shared::trust::Certificate;
use jianka_shared::{RegionCode, Tier, Year};
use std::collections::{BTreeMap, HashSet};

/// An allocation with its chain from the province down (the last is this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub allocation: Allocation,
    pub chain: Vec<SignedAllocation>,
}

impl Held {
    pub fn digest(&self) -> String {
        self.chain.last().map(SignedAllocation::digest).unwrap_or_default()
    }
}

/// What the hub holds, verified.
#[derive(Debug, Default)]
pub(crate) struct AllocationBook {
    /// Digests already looked at (verified or not), so each row is checked once.
    seen: HashSet<String>,
    own: Vec<Held>,
    /// Issued by this hub or filed with it, by the region they are for.
    below: BTreeMap<RegionCode, Vec<Held>>,
}

/// The ceiling a county enforces for a year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ceiling {
    /// Scale control is off (or this hub does not re-examine): no ceiling.
    Uncontrolled,
    /// Under scale control without a verified allocation: nothing is admitted, for this reason.
    Missing(String),
    /// The allocation's numbers, split to townships by the county's own allocations (or its
    /// quotas file) when that split stays within them.
    Allocated(CountyQuota),
}

impl Ceiling {
    pub fn people(&self) -> Option<u64> {
        match self {
            Ceiling::Allocated(q) => Some(q.people),
            Ceiling::Missing(_) => Some(0),
            Ceiling::Uncontrolled => None,
        }
    }

    pub fn villages(&self) -> Option<u64> {
        match self {
            Ceiling::Allocated(q) => Some(q.villages),
            Ceiling::Missing(_) => Some(0),
            Ceiling::Uncontrolled => None,
        }
    }
}

/// The child of `hub` an allocation for `region` goes to: `region` itself, or the enrolled
/// prefecture that contains it (the province splits to counties even where a prefecture sits
/// between, and gives the prefecture the sum with the counties' parts).
fn receiver(hub: &RegionCode, region: &RegionCode, prefectures: &[RegionCode]) -> Option<RegionCode> {
    if hub.tier() == Tier::Province
        && region.tier() == Tier::County
        && let Some(p) = prefectures.iter().find(|p| p.contains(region))
    {
        return Some(p.clone());
    }
    allocation::is_child(hub, region).then(|| region.clone())
}

impl Hub {
    /// Whether this hub admits people under ceilings: a county whose profile turns scale control
    /// on (with no profile: when its quotas file names it, as before profiles existed).
    pub fn scale_controlled(&self) -> bool {
        if self.region().tier() != Tier::County {
            return false;
        }
        match &self.profile {
            Some(p) => p.scale_control,
            None => self.quotas.counties.iter().any(|q| &q.county == self.region()),
        }
    }

    /// Reads allocations stored since the last look and verifies them.
    pub async fn refresh_allocations(&self) -> Result<(), HubError> {
        let rows = self.store.allocations().await?;
        let fresh: Vec<AllocationRow> = {
            let book = self.allocations.read().unwrap_or_else(|e| e.into_inner());
            rows.into_iter().filter(|r| !book.seen.contains(&r.digest)).collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        let certs = self.chain().ok();
        let mut checked = Vec::with_capacity(fresh.len());
        for row in fresh {
            let verdict = self.verify_row(&row, certs.as_deref()).await;
            if let Err(e) = &verdict {
                tracing::error!(region = %row.region, year = row.year, error = %e, "a stored allocation does not verify; it is not in force");
            }
            checked.push((row.digest, verdict.ok()));
        }
        let mut book = self.allocations.write().unwrap_or_else(|e| e.into_inner());
        for (digest, held) in checked {
            book.seen.insert(digest);
            let Some(held) = held else { continue };
            if &held.allocation.region == self.region() {
                book.own.push(held);
            } else {
                book.below.entry(held.allocation.region.clone()).or_default().push(held);
            }
        }
        Ok(())
    }

    async fn verify_row(&self, row: &AllocationRow, certs: Option<&[Certificate]>) -> anyhow::Result<Held> {
        let chain: Vec<SignedAllocation> = serde_json::from_str(&row.chain).context("the chain is not readable")?;
        let last = chain.last().context("the chain is empty")?;
        anyhow::ensure!(last.digest() == row.digest, "the row's digest is not its allocation's");
        let a = last.read().map_err(|e| anyhow::anyhow!("{e}"))?;
        if &a.region == self.region() {
            let certs = certs.context("this hub has no certificate chain to verify its allocation with")?;
            let all = allocation::verify_chain(&chain, certs, self.region())?;
            return Ok(Held { allocation: all.into_iter().last().expect("non-empty"), chain });
        }
        if &a.issuer == self.region() {
            anyhow::ensure!(last.signed_by(&self.key.verifying_key()), "not signed by this hub's key");
            return Ok(Held { allocation: a, chain });
        }
        // Filed by a child prefecture: the part above it is this hub's, the last the child's.
        let filer = self.store.cert(&a.issuer_key).await?.context("filed by a key this hub never enrolled")?;
        anyhow::ensure!(
            filer.subject == a.issuer.as_str() && !filer.revoked,
            "filed by a key not enrolled for {}",
            a.issuer
        );
        let mut certs = certs.map(<[Certificate]>::to_vec).unwrap_or_default();
        certs.push(serde_json::from_str(&filer.cert).context("the filer's certificate")?);
        let all = allocation::verify_chain(&chain, &certs, &a.region)?;
        Ok(Held { allocation: all.into_iter().last().expect("non-empty"), chain })
    }

    /// This hub's own allocation in force in `year`, if a verified one has arrived.
    pub fn own_allocation(&self, year: Year) -> Option<Held> {
        let book = self.allocations.read().unwrap_or_else(|e| e.into_inner());
        in_force(&book.own, year).cloned()
    }

    /// The allocations in force in `year` below this hub, by region (children, and the counties
    /// of a prefecture that filed with it). A filed allocation counts only while it splits the
    /// allocation this hub has in force for the prefecture: once that is replaced (lowered, say),
    /// the prefecture's earlier split no longer stands here.
    pub fn allocations_below(&self, year: Year) -> BTreeMap<RegionCode, Held> {
        let book = self.allocations.read().unwrap_or_else(|e| e.into_inner());
        let all: BTreeMap<RegionCode, Held> =
            book.below.iter().filter_map(|(r, all)| Some((r.clone(), in_force(all, year)?.clone()))).collect();
        all.iter()
            .filter(|(_, h)| {
                &h.allocation.issuer == self.region()
                    || all.get(&h.allocation.issuer).map(Held::digest).as_deref() == h.allocation.parent.as_deref()
            })
            .map(|(r, h)| (r.clone(), h.clone()))
            .collect()
    }

    /// The people this hub issued for `year` per region below it: each allocation in force, and
    /// for a county inside a prefecture's allocation that filed nothing for it, its part there.
    pub fn issued_people(&self, year: Year) -> BTreeMap<RegionCode, u64> {
        let below = self.allocations_below(year);
        let mut out: BTreeMap<RegionCode, u64> = below.iter().map(|(r, h)| (r.clone(), h.allocation.people)).collect();
        for h in below.values() {
            for (r, share) in &h.allocation.parts {
                out.entry(r.clone()).or_insert(share.people);
            }
        }
        out
    }

    /// Every allocation held (own first, then below), for the report.
    pub fn all_allocations(&self) -> Vec<Held> {
        let book = self.allocations.read().unwrap_or_else(|e| e.into_inner());
        book.own.iter().chain(book.below.values().flatten()).cloned().collect()
    }

    /// The ceiling this county enforces in `year` (see [`Ceiling`]).
    pub fn ceiling(&self, year: Year) -> Ceiling {
        if !self.scale_controlled() {
            return Ceiling::Uncontrolled;
        }
        let Some(own) = self.own_allocation(year) else {
            let parent = self.region().parent().map(|p| p.to_string()).unwrap_or_default();
            return Ceiling::Missing(format!(
                "no verified allocation of the scale for {year} has reached county {} from {parent}; under scale \
                 control nothing is admitted until one does (it comes down with the parent's feedback, or \
                 `jianka-hub install-allocation FILE`)",
                self.region()
            ));
        };
        let a = &own.allocation;
        let issued: BTreeMap<RegionCode, u64> =
            self.allocations_below(year).into_iter().map(|(r, h)| (r, h.allocation.people)).collect();
        let townships = if !issued.is_empty() {
            issued
        } else {
            let file = self.quotas.counties.iter().find(|q| &q.county == self.region());
            let split = file.map(|q| q.townships.clone()).unwrap_or_default();
            if split.values().sum::<u64>() > a.people {
                tracing::warn!(county = %self.region(), allocated = a.people, "the quotas file's township split exceeds the allocation; it is not applied");
                BTreeMap::new()
            } else {
                split
            }
        };
        Ceiling::Allocated(CountyQuota {
            county: self.region().clone(),
            people: a.people,
            villages: a.villages,
            townships,
        })
    }

    /// Keeps an allocation chain for this hub, received from its parent, in `tx`: verified
    /// through the certificate chain first. Returns the allocation (the caller commits, then
    /// [`Hub::refresh_allocations`]).
    pub(crate) async fn keep_received(
        &self,
        tx: &mut dyn WriteTx,
        chain: &[SignedAllocation],
    ) -> Result<Allocation, HubError> {
        let certs = self.chain().map_err(|e| HubError::new(ErrorCode::Internal, e.to_string()))?;
        let verified = allocation::verify_chain(chain, &certs, self.region()).map_err(refused)?;
        let a = verified.into_iter().last().expect("non-empty");
        let digest = chain.last().map(SignedAllocation::digest).unwrap_or_default();
        if self.allocations.read().unwrap_or_else(|e| e.into_inner()).seen.contains(&digest) {
            return Ok(a); // delivered again (by hand and with feedback): kept once
        }
        let row = AllocationRow {
            digest,
            region: a.region.to_string(),
            year: a.year,
            serial: a.serial,
            chain: serde_json::to_string(chain).expect("in-memory encoding"),
            at: self.now_secs(),
        };
        tx.put_allocation(row).await?;
        self.audit(tx, &[AuditEntry::new("allocation_received", a.region.to_string(), "", summary(&a))]).await?;
        Ok(a)
    }

    /// At the province: an allocation a child prefecture issued to one of its counties, filed
    /// here (备案). It must split the prefecture's allocation from this hub, be signed by the
    /// prefecture's enrolled key, and stay within what the prefecture received; it then counts
    /// in the re-check of that county's admissions.
    pub async fn receive_filing(
        &self,
        sender: &crate::auth::Sender,
        chain: &[SignedAllocation],
    ) -> Result<Allocation, HubError> {
        let bad = |m: String| HubError::new(ErrorCode::BadRequest, m);
        if self.region().tier() != Tier::Province || sender.region.tier() != Tier::Prefecture {
            return Err(HubError::new(
                ErrorCode::OutsideRegion,
                format!(
                    "allocations are filed by a prefecture with its province; {} takes none from {}",
                    self.region(),
                    sender.region
                ),
            ));
        }
        let last = chain.last().ok_or_else(|| bad("an empty allocation chain".into()))?;
        let a = last.read().map_err(|e| bad(format!("not an allocation: {e}")))?;
        if a.issuer != sender.region || a.issuer_key != sender.key_id.to_string() {
            return Err(HubError::new(
                ErrorCode::OutsideRegion,
                format!("{} may file only allocations it issued itself; this one is {}'s", sender.region, a.issuer),
            ));
        }
        let row = AllocationRow {
            digest: last.digest(),
            region: a.region.to_string(),
            year: a.year,
            serial: a.serial,
            chain: serde_json::to_string(chain).expect("in-memory encoding"),
            at: self.now_secs(),
        };
        // The same check a restart makes: this hub's part above, the prefecture's enrolled key below.
        let certs = self.chain().map_err(|e| HubError::new(ErrorCode::Internal, e.to_string()))?;
        self.verify_row(&row, Some(&certs))
            .await
            .map_err(|e| HubError::new(ErrorCode::BadSignature, format!("allocation refused: {e:#}")))?;
        let (_g, mut tx) = self.begin_write().await?;
        tx.put_allocation(row).await?;
        self.audit(&mut *tx, &[AuditEntry::new("allocation_filed", a.region.to_string(), "", summary(&a))]).await?;
        tx.commit().await?;
        self.refresh_allocations().await?;
        Ok(a)
    }

    /// `jianka-hub install-allocation`: an allocation chain carried by hand (a file from the
    /// parent's `allocate --out`), verified and kept as if it had come down with feedback.
    pub async fn install_allocation(&self, chain: &[SignedAllocation]) -> anyhow::Result<Allocation> {
        let (_g, mut tx) = self.begin_write().await?;
        let a = self.keep_received(&mut *tx, chain).await?;
        tx.commit().await?;
        self.refresh_allocations().await?;
        Ok(a)
    }

    /// Signs and issues allocations for `year` — `split` gives each region's people and villages
    /// (counties at the province, townships at a county) — and queues each as feedback for the
    /// child it goes to. Below the province the parts may not add up to more than this hub's
    /// own allocation, and every one names it as parent. Returns what was issued.
    pub async fn allocate(
        &self,
        year: Year,
        split: &BTreeMap<RegionCode, Share>,
        note: &str,
    ) -> anyhow::Result<Vec<Held>> {
        self.refresh_allocations().await?;
        let own = match self.region().tier() {
            Tier::Province => None,
            _ => Some(self.own_allocation(year).with_context(|| {
                format!(
                    "{} has no verified allocation for {year} from its parent; a hub splits only what it received \
                     (it comes down with the parent's feedback, or `jianka-hub install-allocation FILE`)",
                    self.region()
                )
            })?),
        };
        let (people, villages) =
            split.values().fold((0u64, 0u64), |(p, v), s| (p.saturating_add(s.people), v.saturating_add(s.villages)));
        if let Some(own) = &own {
            // What stays in force for the children this split leaves out counts too: two calls
            // may not together give more than was received.
            let (kept_people, kept_villages) = self
                .allocations_below(year)
                .into_iter()
                .filter(|(r, h)| !split.contains_key(r) && &h.allocation.issuer == self.region())
                .fold((0u64, 0u64), |(p, v), (_, h)| (p + h.allocation.people, v + h.allocation.villages));
            let a = &own.allocation;
            let (people, villages) = (people + kept_people, villages + kept_villages);
            if people > a.people || villages > a.villages {
                bail!(
                    "the split gives {people} people and {villages} villages (with what stays in force for the \
                     other children), more than the {} people and {} villages {} was allocated for {year}",
                    a.people,
                    a.villages,
                    self.region()
                );
            }
        }
        let prefectures: Vec<RegionCode> = self
            .store
            .enrolled_subjects()
            .await?
            .iter()
            .filter_map(|s| RegionCode::parse(s).ok())
            .filter(|r| r.tier() == Tier::Prefecture)
            .collect();
        let mut grouped: BTreeMap<RegionCode, BTreeMap<RegionCode, Share>> = BTreeMap::new();
        for (region, share) in split {
            let Some(to) = receiver(self.region(), region, &prefectures) else {
                bail!(
                    "{region} is not a region this hub allocates to (its children are one tier below {})",
                    self.region()
                );
            };
            grouped.entry(to).or_default().insert(region.clone(), *share);
        }
        let below = self.allocations_below(year);
        let serial_of = |r: &RegionCode| {
            self.allocations.read().unwrap_or_else(|e| e.into_inner()).below.get(r).map_or(0, |all| {
                all.iter().filter(|h| h.allocation.year == year).map(|h| h.allocation.serial).max().unwrap_or(0)
            })
        };
        let mut issued = Vec::new();
        for (to, parts) in grouped {
            let total = parts.values().fold(Share::default(), |t, s| Share {
                people: t.people + s.people,
                villages: t.villages + s.villages,
            });
            let keep_parts = parts.len() > 1 || !parts.contains_key(&to);
            let a = Allocation {
                region: to.clone(),
                year,
                serial: serial_of(&to) + 1,
                people: total.people,
                villages: total.villages,
                parts: if keep_parts { parts } else { BTreeMap::new() },
                issuer: self.region().clone(),
                issuer_key: self.key_id().to_string(),
                parent: own.as_ref().map(Held::digest),
                issued_at: self.clock.now().to_rfc3339(),
                note: note.to_string(),
            };
            let mut chain = own.as_ref().map(|o| o.chain.clone()).unwrap_or_default();
            chain.push(a.sign(&self.key));
            let before = below.get(&to).map(|h| summary(&h.allocation)).unwrap_or_default();
            issued.push((Held { allocation: a, chain }, before));
        }
        let (_g, mut tx) = self.begin_write().await?;
        let mut entries = Vec::new();
        let mut down = Vec::new();
        for (held, before) in &issued {
            let a = &held.allocation;
            tx.put_allocation(AllocationRow {
                digest: held.digest(),
                region: a.region.to_string(),
                year,
                serial: a.serial,
                chain: serde_json::to_string(&held.chain)?,
                at: self.now_secs(),
            })
            .await?;
            entries.push(AuditEntry::new("allocation", a.region.to_string(), before.clone(), summary(a)));
            down.push((a.region.to_string(), Feedback::Allocation { chain: held.chain.clone() }));
        }
        push_feedback(&mut *tx, &down).await?;
        self.audit(&mut *tx, &entries).await?;
        tx.commit().await?;
        self.refresh_allocations().await?;
        Ok(issued.into_iter().map(|(h, _)| h).collect())
    }

    /// 微调: moves `villages` poor-village places from one county to another, both below this
    /// hub in one prefecture, by issuing each a new allocation (the next serial) — signed, audited,
    /// sent down to both counties, and filed with the province by the next forward.
    pub async fn adjust_villages(
        &self,
        year: Year,
        from: &RegionCode,
        to: &RegionCode,
        villages: u64,
        reason: &str,
    ) -> anyhow::Result<(Held, Held)> {
        if !matches!(self.region().tier(), Tier::Prefecture | Tier::Province) {
            bail!("微调 is made at the prefecture (or the province); this hub serves {}", self.region());
        }
        if from.ancestor(Tier::Prefecture) != to.ancestor(Tier::Prefecture) || from == to {
            bail!("{from} and {to} are not two counties of one prefecture; 微调 moves places only within one");
        }
        if self.region().tier() == Tier::Province
            && let Some(p) = self
                .store
                .enrolled_subjects()
                .await?
                .into_iter()
                .find(|s| s.len() == Tier::Prefecture.code_len() && from.as_str().starts_with(s.as_str()))
        {
            bail!("{from} and {to} are under the prefecture hub {p}: 微调 between them is made there");
        }
        self.refresh_allocations().await?;
        let below = self.allocations_below(year);
        let current = |c: &RegionCode| {
            below.get(c).map(|h| h.allocation.clone()).with_context(|| {
                format!(
                    "{c} has no allocation for {year} from {}; allocate first (`jianka-hub allocate`)",
                    self.region()
                )
            })
        };
        let (a, b) = (current(from)?, current(to)?);
        if villages > a.villages {
            bail!("{from} has {} poor-village places for {year}; cannot move {villages}", a.villages);
        }
        let note = format!("微调: {villages} villages from {from} to {to}: {reason}");
        let split = BTreeMap::from([
            (from.clone(), Share { people: a.people, villages: a.villages - villages }),
            (to.clone(), Share { people: b.people, villages: b.villages + villages }),
        ]);
        // Only the two counties: the sum of everything issued is unchanged, so it stays within
        // this hub's own allocation.
        let mut issued = self.allocate(year, &split, &note).await?;
        let second = issued.pop().context("two allocations")?;
        let first = issued.pop().context("two allocations")?;
        Ok(if first.allocation.region == *from { (first, second) } else { (second, first) })
    }
}

/// Of `all`, the one in force in `year` (see [`allocation::in_force`]).
fn in_force(all: &[Held], year: Year) -> Option<&Held> {
    all.iter().filter(|h| h.allocation.year <= year).max_by_key(|h| (h.allocation.year, h.allocation.serial))
}

/// An allocation in a line, for the audit log and reports.
pub fn summary(a: &Allocation) -> String {
    format!(
        "{} {} #{}: {} people, {} villages (issued by {} key {}{})",
        a.region,
        a.year,
        a.serial,
        a.people,
        a.villages,
        a.issuer,
        a.issuer_key,
        if a.note.is_empty() { String::new() } else { format!("; {}", a.note) }
    )
}

fn refused(e: AllocationError) -> HubError {
    HubError::new(ErrorCode::BadSignature, format!("allocation refused: {e}"))
}
