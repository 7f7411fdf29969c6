//! One vocabulary for people: a workflow status is named by its Chinese label first, then its
//! English name, `县公告 (CountyAnnounced)`, and a step as `申请 → 民主评议 (Applied → Appraised)`,
//! in every list, message and error the node prints. What is stored and sent over the wire stays
//! the English name alone (`CountyAnnounced`).

use jianka_shared::domain::Status;

/// `县公告 (CountyAnnounced)`.
pub fn status(s: Status) -> String {
    format!("{} ({s:?})", s.label())
}

/// A status named as the profile's flow names its step: 镇级审定 (CountyAnnounced) under seed 003.
pub fn status_in(flow: &jianka_shared::flow::Flow, s: Status) -> String {
    format!("{} ({s:?})", flow.label(s))
}

/// A step as the profile's flow names it.
pub fn step_in(flow: &jianka_shared::flow::Flow, from: Status, to: Status) -> String {
    format!("{} → {} ({from:?} → {to:?})", flow.label(from), flow.label(to))
}

/// A status as stored (English name or Chinese label), named for people; one this version does
/// not know is shown as stored.
pub fn stored_status(stored: &str) -> String {
    Status::parse(stored).map(status).unwrap_or_else(|| stored.to_string())
}

/// `申请 → 民主评议 (Applied → Appraised)`.
pub fn step(from: Status, to: Status) -> String {
    format!("{} → {} ({from:?} → {to:?})", from.label(), to.label())
}

/// A step between two stored statuses (as the workflow history keeps them).
pub fn stored_step(from: &str, to: &str) -> String {
    match (Status::parse(from), Status::parse(to)) {
        (Some(f), Some(t)) => step(f, t),
        _ => format!("{} → {}", stored_status(from), stored_status(to)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_label_first_then_the_english_name() {
        assert_eq!(status(Status::CountyAnnounced), "县公告 (CountyAnnounced)");
        assert_eq!(stored_status("CountyAnnounced"), "县公告 (CountyAnnounced)");
        assert_eq!(stored_status("Unheard"), "Unheard");
        assert_eq!(stored_step("Applied", "Appraised"), "申请 → 民主评议 (Applied → Appraised)");
    }
}
