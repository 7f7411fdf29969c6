//! Jianka's shared vocabulary: the domain types of the poverty registry (建档立卡), the rules the
//! data must satisfy, the configuration shapes (profiles, quotas), the signed and compressed
//! change-set format, the trust chain, and the JSON protocol between a node and a hub.
//!
//! This crate does no I/O: no files, no sockets, no clock reads. Callers pass "today" and "now".

pub mod allocation;
pub mod assistance;
pub mod changeset;
pub mod columns;
pub mod digest;
pub mod domain;
pub mod eligibility;
pub mod flow;
pub mod hlc;
pub mod id_number;
pub mod labels;
pub mod money;
pub mod monitoring;
pub mod profile;
pub mod protocol;
pub mod record;
pub mod region;
pub mod scale;
pub mod trust;
pub mod village_form;

pub use hlc::Hlc;
pub use id_number::IdNumber;
pub use money::Yuan;
pub use record::{Record, RecordKey, RecordKind};
pub use region::{RegionCode, Tier};

/// A registry year: every record belongs to one (domain.md §6, standard period = calendar year).
pub type Year = u16;
