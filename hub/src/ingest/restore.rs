//! Step 6: what the county refused outright goes back down as the county holds it, so the
//! township's copy never keeps a change the county did not take.

use crate::feedback::removed_feedback;
use crate::ingest::outcome::IngestOutcome;
use crate::record::HashSet;
use crate::record::parse_storage_key;
use jianka_shared::protocol::{CORRECTIONS_PER_ITEM, Correction, Feedback};
use jianka_shared::{Hlc, RegionCode};

/// Every record whose change the county refused outright, as the county holds it after this
/// change set, for `writer` to put in place of its own copy: a live record of the writer's own
/// region as `Restored`; one the county does not hold, or holds for another region (never sent
/// to this writer), as `Removed`.
pub(crate) fn restore_feedback(fx: &mut IngestOutcome, writer: &RegionCode) {
    let mut seen = HashSet::default();
    let keys: Vec<String> = std::mem::take(&mut fx.restore).into_iter().filter(|k| seen.insert(k.clone())).collect();
    let version = Hlc(fx.move_version);
    let (mut restored, mut removed) = (Vec::new(), Vec::new());
    for k in keys {
        let held = fx.rows.get(&k).filter(|r| !r.deleted);
        match held {
            Some(r) if RegionCode::parse(&r.region).is_ok_and(|g| writer.contains(&g)) => {
                let values = r.fields.iter().map(|(n, f)| (n.to_string(), f.0.to_string())).collect();
                restored.push(Correction { key: r.key.clone(), values, version });
            }
            _ => removed.extend(parse_storage_key(&k)),
        }
    }
    let to = writer.to_string();
    for chunk in restored.chunks(CORRECTIONS_PER_ITEM) {
        fx.feedback.push((to.clone(), Feedback::Restored { items: chunk.to_vec() }));
    }
    fx.feedback.extend(removed_feedback(&to, &removed, version));
}
