//! Conflicts held for a decision (a contested field, a duplicated person) and their resolution.

use crate::audit::AuditEntry;
use crate::error::HubError;
use crate::feedback::push_feedback;
use crate::merge::FieldState;
use crate::record::{StoredRecord, parse_storage_key};
use crate::state::Hub;
use crate::store::ConflictRow;
use jianka_shared::{changeset::Op, protocol::*};
use serde::{Deserialize, Serialize};

impl Hub {
    pub async fn conflicts(&self, all: bool) -> Result<Vec<ConflictView>, HubError> {
        Ok(self
            .store
            .conflicts(all)
            .await?
            .into_iter()
            .map(|c| ConflictView {
                id: c.id,
                kind: c.kind,
                record: parse_storage_key(&c.k).map(|k| k.to_string()).unwrap_or(c.k),
                field: c.field,
                current_value: c.current_value,
                current_by: c.current_by,
                proposed_value: c.proposed_value,
                proposed_by: c.proposed_by,
                status: c.status,
                resolution: c.resolution,
            })
            .collect())
    }

    /// Settles a conflict: `keep` names the household a duplicated person stays in; `value` is the
    /// value a contested field takes. Both writers get Resolved feedback; the decision is audited.
    pub async fn resolve_conflict(
        &self,
        id: i64,
        keep: Option<&str>,
        value: Option<&str>,
        reason: &str,
    ) -> Result<(), HubError> {
        if reason.trim().is_empty() {
            return Err(HubError::new(ErrorCode::BadRequest, "a resolution needs a --reason"));
        }
        let (mut hlc, mut tx) = self.begin_write().await?;
        let ConflictRow {
            kind,
            k,
            field,
            current_value: cur_v,
            current_by: cur_by,
            proposed_value: prop_v,
            proposed_by: prop_by,
            proposal,
            status,
            ..
        } = tx.conflict(id).await?.ok_or_else(|| HubError::new(ErrorCode::NotFound, format!("no conflict #{id}")))?;
        if status != "open" {
            return Err(HubError::new(ErrorCode::BadRequest, format!("conflict #{id} is already resolved")));
        }
        let key = parse_storage_key(&k)
            .ok_or_else(|| HubError::new(ErrorCode::Internal, "stored conflict key unreadable"))?;
        let existing = tx.records(std::slice::from_ref(&k)).await?.into_iter().next();
        let mut row = match existing {
            Some(e) => StoredRecord { deleted: false, ..e },
            None => StoredRecord {
                key: key.clone(),
                region: String::new(),
                hh: String::new(),
                fields: Default::default(),
                deleted: false,
            },
        };
        let version = self.tick(&mut hlc);
        let stands: String;
        if kind == "duplicate_person" {
            let keep = keep.ok_or_else(|| {
                HubError::new(ErrorCode::BadRequest, "a duplicate person is resolved with --keep <household id>")
            })?;
            if keep == prop_v {
                let op: Op = serde_json::from_str(&proposal)
                    .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored proposal unreadable: {e}")))?;
                if let Op::Upsert { fields, .. } = op {
                    for w in fields {
                        row.fields.insert(w.name, FieldState(w.value, version.0, prop_by.as_str().into()));
                    }
                }
                row.hh = prop_v.clone();
                row.region = row.fields.get("village").map(|f| f.0.to_string()).unwrap_or(row.region);
            } else if keep != cur_v {
                return Err(HubError::new(ErrorCode::BadRequest, format!("--keep must be {cur_v} or {prop_v}")));
            }
            stands = keep.to_string();
        } else {
            let v = value
                .ok_or_else(|| HubError::new(ErrorCode::BadRequest, "a field conflict is resolved with --value V"))?;
            row.fields.insert(field.as_str().into(), FieldState(v.into(), version.0, self.region().as_str().into()));
            stands = v.to_string();
        }
        if !row.region.is_empty() {
            tx.write_new_revision(vec![row.clone()]).await?;
        }
        let note = format!("conflict #{id} resolved by {}: {reason}", self.region());
        let mut fb = Vec::new();
        for by in [&cur_by, &prop_by] {
            let to = if by.len() > 9 { by[..9].to_string() } else { by.clone() };
            if fb.iter().any(|(t, _): &(String, Feedback)| *t == to) {
                continue;
            }
            fb.push((
                to,
                Feedback::Resolved {
                    key: key.clone(),
                    field: field.clone(),
                    value: stands.clone(),
                    note: note.clone(),
                },
            ));
        }
        push_feedback(&mut *tx, &fb).await?;
        tx.resolve_conflict(id, &format!("{stands} — {reason}")).await?;
        self.audit(
            &mut *tx,
            &[AuditEntry::new(
                "resolve",
                format!("conflict #{id} {key}"),
                format!("{cur_v} | {prop_v}"),
                format!("{stands}: {reason}"),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictView {
    pub id: i64,
    pub kind: String,
    pub record: String,
    pub field: String,
    pub current_value: String,
    pub current_by: String,
    pub proposed_value: String,
    pub proposed_by: String,
    pub status: String,
    pub resolution: Option<String>,
}
