//! Who may write what (ARCHITECTURE.md, "Authority"): what every incoming record is checked
//! against before it is merged — the references a record carries and the shape and size of every
//! value here; which tier owns each workflow status and who may move a record out of it in the
//! profile's flow (`jianka_shared::flow`).
//! Field ownership by name (`county.*`, `province.*`) is `record::field_owner`; the merge applies
//! it per field. Pure: no I/O, no hub state.

use jianka_shared::{
    RecordKey, RecordKind, RegionCode, Yuan, changeset::FieldWrite, domain::Status, protocol::RejectReason,
};

// Who may put a record into a status and move it out is the profile's flow
// (`jianka_shared::flow::Flow::check_status`), derived from its steps.

/// Statuses in which the deciding tier has decided the record: its facts change only in the annual
/// update (a window or a reopening), as on the node (`edit::ensure_editable_status`).
pub fn is_decided(s: Status) -> bool {
    matches!(s, Status::CountyAnnounced | Status::ProvinceFiled | Status::Exited)
}

/// A household id `<12-digit village>-<number>`: the village and the number.
pub fn split_household_id(id: &str) -> Option<(&str, &str)> {
    let (village, number) = id.split_once('-')?;
    let ok = village.len() == 12 && village.bytes().all(|b| b.is_ascii_digit()) && !number.is_empty();
    ok.then_some((village, number))
}

/// The references a record carries, checked against its key and the writer's region once its
/// fields are merged (`field` reads the merged record): a household's `village` and `number`
/// are those of its key; a member's `household` lies in the writer's region and its `village`
/// is that household's village. A reference outside the writer's region is `NotAuthorised`, one
/// that disagrees with the key `FailedValidation`.
pub fn check_references<'a>(
    key: &RecordKey,
    writer: &RegionCode,
    field: impl Fn(&str) -> Option<&'a str>,
) -> Result<(), (RejectReason, String)> {
    let invalid = |m: String| (RejectReason::FailedValidation, m);
    match key.kind {
        RecordKind::Household => {
            let Some((village, number)) = split_household_id(&key.id) else {
                return Err(invalid(format!("household id {:?} is not <12-digit village code>-<number>", key.id)));
            };
            if let Some(v) = field("village").filter(|v| *v != village) {
                return Err(invalid(format!(
                    "field village {v} does not agree with the household's key (village {village})"
                )));
            }
            if let Some(n) = field("number").filter(|n| n.trim() != number) {
                return Err(invalid(format!(
                    "field number {n:?} does not agree with the household's key (number {number})"
                )));
            }
        }
        RecordKind::Member => {
            let Some(hh) = field("household") else {
                return Err(invalid("a member names no household".into()));
            };
            let Some((village, _)) = split_household_id(hh) else {
                return Err(invalid(format!("household {hh:?} is not <12-digit village code>-<number>")));
            };
            if !RegionCode::parse(village).is_ok_and(|v| writer.contains(&v)) {
                return Err((RejectReason::NotAuthorised, format!("household {hh} lies outside {writer}")));
            }
            if let Some(v) = field("village").filter(|v| *v != village) {
                return Err(invalid(format!("field village {v} does not agree with the member's household {hh}")));
            }
        }
        RecordKind::Village => {
            if key.id.len() != 12 || !key.id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("village code {:?} is not 12 digits", key.id)));
            }
        }
        RecordKind::Assistance => {
            let hh = jianka_shared::assistance::household_of(&key.id).filter(|hh| split_household_id(hh).is_some());
            let Some(hh) = hh else {
                return Err(invalid(format!("帮扶 entry {:?} is not <household id>/<P|M|R><number>", key.id)));
            };
            if let Some(named) = field("household").filter(|n| *n != hh) {
                return Err(invalid(format!("field household {named} does not agree with the entry's key ({hh})")));
            }
        }
    }
    Ok(())
}

/// Limits on what a record may carry. Free text is a few hundred characters; codes and numbers
/// have their exact shape (see [`check_value`]).
pub const MAX_FIELDS_PER_RECORD: usize = 64;
pub const MAX_FIELD_NAME: usize = 64;
pub const MAX_TEXT_CHARS: usize = 500;
pub const MAX_DECISION_CHARS: usize = 2_000;
pub const MAX_RECORD_BYTES: usize = 8 * 1024;

/// A size or shape limit a record broke: the message names the field and the limit, never the
/// value (it may be personal data, or megabytes long).
pub fn check_limits(key: &RecordKey, fields: &[FieldWrite]) -> Result<(), String> {
    if key.id.len() > 40 {
        return Err(format!("record id of {} bytes is over the 40-byte limit", key.id.len()));
    }
    // Ids become keys and columns of their own (PostgreSQL text cannot even hold a NUL).
    if let Some(c) = key.id.chars().find(|c| c.is_control()) {
        return Err(format!("record id contains the control character U+{:04X}", u32::from(c)));
    }
    if fields.len() > MAX_FIELDS_PER_RECORD {
        return Err(format!("{} fields is over the {MAX_FIELDS_PER_RECORD}-field limit per record", fields.len()));
    }
    let total: usize = fields.iter().map(|w| w.name.len() + w.value.len()).sum();
    if total > MAX_RECORD_BYTES {
        return Err(format!("{total} bytes of fields is over the {MAX_RECORD_BYTES}-byte limit per record"));
    }
    for w in fields {
        check_value(&w.name, &w.value)?;
    }
    Ok(())
}

/// The bytes a field name may hold (a-z, 0-9, '_', '.'), one lookup per byte: it runs for every
/// field of every change set.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.';
        b += 1;
    }
    table
};

/// One field's name and value against its shape.
pub fn check_value(name: &str, value: &str) -> Result<(), String> {
    let name_ok = !name.is_empty() && name.len() <= MAX_FIELD_NAME && name.bytes().all(|b| NAME_BYTES[usize::from(b)]);
    if !name_ok {
        let shown: String = name.chars().take(MAX_FIELD_NAME).collect();
        return Err(format!("field name {shown:?} is not 1–{MAX_FIELD_NAME} characters of a-z, 0-9, '_' and '.'"));
    }
    // Line breaks and tabs may stand in free text; no other control character belongs in a form.
    let chars = match text_shape(value) {
        Ok(chars) => chars,
        Err(c) => return Err(format!("field {name} contains the control character U+{:04X}", u32::from(c))),
    };
    let digits =
        |v: &str, min: usize, max: usize| (min..=max).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit());
    let shape_ok = match name {
        "village" => digits(value, 12, 12),
        "household" => value.len() <= 40 && split_household_id(value).is_some(),
        "number" => (1..=20).contains(&chars),
        "members" | "households" | "population" | "poor_households" | "poor_population" => digits(value, 1, 9),
        "income" | "income_per_capita" | "collective_income" => value.len() <= 20 && Yuan::parse(value).is_ok(),
        // Offices write "无" or an extension into these: their length is the limit, not a charset.
        "phone" | "helper_phone" => chars <= 30,
        "bank_account" => chars <= 40,
        "move_out" => value.is_empty() || digits(value, 6, 6),
        "name" | "helper_name" => chars <= 50,
        "helper_unit" => chars <= 100,
        "status" => Status::parse(value).is_some(),
        // The tiers' own decisions carry their reasons (a refusal lists every rule it broke).
        _ if ["township.", "county.", "province."].iter().any(|p| name.starts_with(p)) => chars <= MAX_DECISION_CHARS,
        _ => chars <= MAX_TEXT_CHARS,
    };
    if shape_ok {
        return Ok(());
    }
    let limit = match name {
        "village" => "a 12-digit village code".to_string(),
        "household" => "<12-digit village code>-<number>".into(),
        "number" => "1–20 characters".into(),
        "members" | "households" | "population" | "poor_households" | "poor_population" => "a whole number".into(),
        "income" | "income_per_capita" | "collective_income" => "an amount in yuan".into(),
        "phone" | "helper_phone" => "at most 30 characters".into(),
        "bank_account" => "at most 40 characters".into(),
        "move_out" => "a 6-digit county code".into(),
        "name" | "helper_name" => "at most 50 characters".into(),
        "helper_unit" => "at most 100 characters".into(),
        "status" => "a workflow step".into(),
        _ if ["township.", "county.", "province."].iter().any(|p| name.starts_with(p)) => {
            format!("at most {MAX_DECISION_CHARS} characters")
        }
        _ => format!("at most {MAX_TEXT_CHARS} characters"),
    };
    Err(format!("field {name} ({chars} characters) is not {limit}"))
}

/// The number of characters in `value`, or its first control character other than a line
/// break or tab: one pass over the bytes (it runs for every field of every change set). The
/// control characters (`char::is_control`) are U+0000–U+001F, U+007F and U+0080–U+009F, the last
/// encoded as 0xC2 0x80–0x9F.
fn text_shape(value: &str) -> Result<usize, char> {
    let bytes = value.as_bytes();
    // Most values are printable ASCII (codes, amounts, numbers): one character a byte, checked
    // without a branch per byte.
    if bytes.iter().fold(true, |printable, &b| printable & (b.wrapping_sub(0x20) < 0x5f)) {
        return Ok(bytes.len());
    }
    let mut chars = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let control = match b {
            b'\n' | b'\r' | b'\t' => false,
            0x00..=0x1f | 0x7f => true,
            0xc2 => bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)),
            _ => false,
        };
        if control {
            return Err(value[i..].chars().next().unwrap_or_default());
        }
        chars += usize::from(b & 0xc0 != 0x80);
    }
    Ok(chars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jianka_shared::flow::Flow;
    use jianka_shared::{Hlc, Tier};
    use proptest::prelude::*;

    fn check_status(writer: Tier, from: Option<Status>, to: Status, in_update: bool) -> Result<(), String> {
        Flow::national_households(7).check_status(writer, from, to, in_update)
    }

    /// Seed 003's household flow: the township decides (镇级审定), the district files.
    fn township_decides() -> Flow {
        let p: jianka_shared::profile::Profile =
            toml::from_str(include_str!("../../config/profiles/miyun-2016.toml")).unwrap();
        p.household_flow()
    }

    fn r(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn a_township_cannot_create_or_move_into_a_county_status() {
        for to in [Status::CountyAnnounced, Status::NotRecognised, Status::ProvinceFiled] {
            assert!(check_status(Tier::Township, None, to, false).is_err(), "{to:?}");
            assert!(check_status(Tier::Township, Some(Status::CountyReview), to, true).is_err(), "{to:?}");
            assert!(check_status(Tier::Township, Some(Status::Applied), to, true).is_err(), "{to:?}");
        }
        assert!(check_status(Tier::Township, None, Status::Applied, false).is_ok());
        assert!(check_status(Tier::Township, Some(Status::TownshipNotice), Status::CountyReview, false).is_ok());
        // Handed over: the county decides now.
        assert!(check_status(Tier::Township, Some(Status::CountyReview), Status::Applied, false).is_err());
        assert!(check_status(Tier::County, Some(Status::CountyReview), Status::CountyAnnounced, false).is_ok());
        assert!(check_status(Tier::County, None, Status::CountyAnnounced, false).is_ok());
        assert!(check_status(Tier::County, None, Status::ProvinceFiled, false).is_err());
    }

    #[test]
    fn a_township_exits_only_in_the_update_and_restarts_only_a_refusal() {
        let exit = |in_update| check_status(Tier::Township, Some(Status::CountyAnnounced), Status::Exited, in_update);
        assert!(exit(true).is_ok());
        assert!(exit(false).unwrap_err().contains("annual update"));
        assert!(check_status(Tier::Township, Some(Status::NotRecognised), Status::CountyReview, false).is_ok());
        assert!(check_status(Tier::Township, Some(Status::CountyAnnounced), Status::Applied, true).is_err());
        assert!(check_status(Tier::Township, Some(Status::Exited), Status::Applied, true).is_err());
    }

    #[test]
    fn references_agree_with_the_key_and_the_region() {
        let t = r("420322105");
        let hk = RecordKey::new(RecordKind::Household, 2014, "420322105200-0001");
        let f = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
        };
        assert!(check_references(&hk, &t, f(&[("village", "420322105200"), ("number", "0001")])).is_ok());
        assert!(check_references(&hk, &t, f(&[("village", "420322105201")])).is_err());
        assert!(check_references(&hk, &t, f(&[("number", "0002")])).is_err());
        let mk = RecordKey::new(RecordKind::Member, 2014, "420322197001010011");
        assert!(
            check_references(&mk, &t, f(&[("household", "420322105200-0001"), ("village", "420322105200")])).is_ok()
        );
        // Planted in another township's household.
        let other = f(&[("household", "420322106200-0001"), ("village", "420322105200")]);
        assert!(check_references(&mk, &t, other).is_err());
        let outside = f(&[("household", "420322106200-0001"), ("village", "420322106200")]);
        assert_eq!(check_references(&mk, &t, outside).unwrap_err().0, RejectReason::NotAuthorised);
        assert!(check_references(&mk, &t, f(&[])).is_err());
    }

    #[test]
    fn limits_name_the_field_never_the_value() {
        let k = RecordKey::new(RecordKind::Household, 2014, "420322105200-0001");
        let w = |name: &str, value: String| FieldWrite {
            name: name.into(),
            value: value.into(),
            version: Hlc(1),
            base: Hlc::ZERO,
        };
        let secret = "6217".repeat(20);
        let e = check_limits(&k, &[w("bank_account", secret.clone())]).unwrap_err();
        assert!(e.contains("bank_account") && !e.contains(&secret), "{e}");
        assert!(check_limits(&k, &[w("helper_name", "张".repeat(51))]).is_err());
        assert!(check_limits(&k, &[w("exit_reason", "x".repeat(MAX_TEXT_CHARS + 1))]).is_err());
        assert!(check_limits(&k, &[w("Bad Name", "x".into())]).is_err());
        let many: Vec<FieldWrite> = (0..=MAX_FIELDS_PER_RECORD).map(|i| w(&format!("f{i}"), "x".into())).collect();
        assert!(check_limits(&k, &many).is_err());
        assert!(check_limits(&k, &[w("income", "4000.00".into()), w("phone", "0719-1234567".into())]).is_ok());
    }

    proptest! {
        /// The one-pass scan reads a text as `str::chars` does: the same count, the same first
        /// control character (other than a line break or tab), printable ASCII (the fast path)
        /// or not.
        #[test]
        fn text_shape_is_what_chars_say(value in "[ -~]{0,24}|[ -~\u{0}-\u{1f}\u{7f}]{0,8}|(\\PC|[\u{0}-\u{1f}\u{7f}-\u{a0}\n\r\t])*") {
            let expected = match value.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
                Some(c) => Err(c),
                None => Ok(value.chars().count()),
            };
            prop_assert_eq!(text_shape(&value), expected);
        }

        /// No sequence of status writes by a township takes a new record into a status the
        /// county or province owns.
        #[test]
        fn township_steps_never_reach_a_county_status(steps in proptest::collection::vec((0usize..10, any::<bool>()), 1..30)) {
            let mut status: Option<Status> = None;
            for (i, in_update) in steps {
                let to = Status::ALL[i];
                if check_status(Tier::Township, status, to, in_update).is_ok() {
                    status = Some(to);
                }
                prop_assert!(
                    status.is_none_or(|s| Flow::national_households(7).owner(s) == Some(Tier::Township)),
                    "{:?}",
                    status
                );
            }
        }

        /// Where the township decides, no sequence of its status writes files what it decided:
        /// 备案 stays the district's.
        #[test]
        fn a_deciding_township_never_files(steps in proptest::collection::vec((0usize..10, any::<bool>()), 1..30)) {
            let flow = township_decides();
            let mut status: Option<Status> = None;
            for (i, in_update) in steps {
                let to = Status::ALL[i];
                if flow.check_status(Tier::Township, status, to, in_update).is_ok() {
                    status = Some(to);
                }
                prop_assert!(status != Some(Status::ProvinceFiled));
                prop_assert!(status != Some(Status::CountyReview), "not a step of seed 003's flow");
            }
        }

        /// Any value of any field either passes or is refused with a message that does not
        /// contain the value itself (when it is longer than a few characters).
        #[test]
        fn limit_messages_never_echo_values(name in "[a-z_]{1,12}", value in "\\PC{6,80}") {
            if let Err(e) = check_value(&name, &value) {
                prop_assert!(!e.contains(&value));
            }
        }
    }
}
