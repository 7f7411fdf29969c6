//! The steps of the household flow and of the village flow as a profile states them (domain.md
//! §5): each step's name, the registry status that records it, the tier that acts, who hands a
//! record in when a higher tier reviews it, and the public notice that follows. The authority
//! table (who may put a record into a status and who may move it out) is derived from the steps,
//! so the node and every hub follow the same flow. Pure: no I/O.
//!
//! The statuses are the registry's fixed stages, in their fixed order; a flow picks the ones it
//! uses. `recognised` (stored as `CountyAnnounced`) is the admission, set by the deciding tier,
//! whose other answer is `NotRecognised` (不予认定); `filed` (`ProvinceFiled`) is the filing (备案)
//! by the tier above it. Seed 000 decides at the county (县复审 → 县公告) and files at the
//! province; seed 003 decides at the township (镇级审定) and files at the district.

use crate::domain::Status;
use crate::region::Tier;
use serde::{Deserialize, Serialize};

/// A profile's flow for one kind of record, checked when it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFlow", into = "RawFlow")]
pub struct Flow {
    decides: Tier,
    steps: Vec<Step>,
}

/// One step of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The step as the seed names it (乡镇审核, 镇级审定).
    pub name: String,
    /// The status a record holds once the step is reached.
    pub status: Status,
    /// The tier that acts in this step: it moves the record on (or decides).
    pub tier: Tier,
    /// The tier that hands a record in for review by a higher one (报县复审): it may put the
    /// record into this step; `None`: the acting tier itself.
    pub handed_in_by: Option<Tier>,
    /// The public notice that runs while a record is at this step.
    pub notice: Option<Notice>,
}

/// A public notice: its length, and the level where the list is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub days: u32,
    pub posted_at: Tier,
}

/// Statuses a step may record, by the names a profile uses.
const STEP_STATUSES: [(&str, Status); 8] = [
    ("applied", Status::Applied),
    ("appraised", Status::Appraised),
    ("village_notice", Status::VillageNotice),
    ("township_review", Status::TownshipReview),
    ("township_notice", Status::TownshipNotice),
    ("review", Status::CountyReview),
    ("recognised", Status::CountyAnnounced),
    ("filed", Status::ProvinceFiled),
];

const TIERS: [(&str, Tier); 5] = [
    ("village", Tier::Village),
    ("township", Tier::Township),
    ("county", Tier::County),
    ("prefecture", Tier::Prefecture),
    ("province", Tier::Province),
];

fn status_name(s: Status) -> &'static str {
    STEP_STATUSES.iter().find(|(_, x)| *x == s).map_or("?", |(n, _)| n)
}

fn tier_name(t: Tier) -> &'static str {
    TIERS.iter().find(|(_, x)| *x == t).map_or("?", |(n, _)| n)
}

fn parse_tier(key: &str, value: &str) -> Result<Tier, String> {
    TIERS.iter().find(|(n, _)| *n == value).map(|(_, t)| *t).ok_or_else(|| {
        format!("{key}: unknown tier {value:?} (one of village, township, county, prefecture, province)")
    })
}

/// A step of a built-in flow.
fn step(name: &str, status: Status, tier: Tier, handed_in_by: Option<Tier>, notice: Option<Notice>) -> Step {
    Step { name: name.into(), status, tier, handed_in_by, notice }
}

impl Flow {
    /// The households' flow of the 2014 national method (seed 000), with notices of `days`.
    pub fn national_households(days: u32) -> Flow {
        use Status::*;
        use Tier::*;
        let n = |d| Some(Notice { days: d, posted_at: Village });
        let t = |d| Some(Notice { days: d, posted_at: Township });
        Flow {
            decides: County,
            steps: vec![
                step("申请", Applied, Township, None, None),
                step("民主评议", Appraised, Township, None, None),
                step("村公示", VillageNotice, Township, None, n(days)),
                step("乡镇审核", TownshipReview, Township, None, None),
                step("乡镇公示", TownshipNotice, Township, None, t(days)),
                step("县复审", CountyReview, County, Some(Township), None),
                step("县公告", CountyAnnounced, County, None, Some(Notice { days, posted_at: County })),
                step("省备案", ProvinceFiled, Province, None, None),
            ],
        }
    }

    /// The poor villages' flow of the 2014 national method: 村申请 → 乡镇审核 → 乡镇公示 → 县审核 → 公告.
    pub fn national_villages(days: u32) -> Flow {
        use Status::*;
        use Tier::*;
        Flow {
            decides: County,
            steps: vec![
                step("村申请", Applied, Township, None, None),
                step("乡镇审核", TownshipReview, Township, None, None),
                step("乡镇公示", TownshipNotice, Township, None, Some(Notice { days, posted_at: Township })),
                step("县审核", CountyReview, County, Some(Township), None),
                step("公告", CountyAnnounced, County, None, Some(Notice { days, posted_at: County })),
            ],
        }
    }

    /// The tier that admits or refuses (认定 / 不予认定): the profile's rules and the ceiling
    /// apply where it decides.
    pub fn decides(&self) -> Tier {
        self.decides
    }

    /// The tier that files the decided list (备案), if the flow files.
    pub fn files(&self) -> Option<Tier> {
        self.step(Status::ProvinceFiled).map(|s| s.tier)
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn step(&self, s: Status) -> Option<&Step> {
        self.steps.iter().find(|x| x.status == s)
    }

    /// The status a record waits in for the deciding tier's decision (县复审), when the flow has one.
    pub fn awaiting_decision(&self) -> Option<Status> {
        self.step(Status::CountyReview).filter(|s| s.tier == self.decides).map(|s| s.status)
    }

    /// The step's name in this flow (镇级审定 for `CountyAnnounced` under seed 003), or the
    /// registry's own label for statuses outside it.
    pub fn label(&self, s: Status) -> &str {
        self.step(s).map_or(s.label(), |x| x.name.as_str())
    }

    /// The next step after `from` and the tier that takes it (puts the record there).
    pub fn next(&self, from: Status) -> Option<(Status, Tier)> {
        let i = self.steps.iter().position(|x| x.status == from)?;
        let to = self.steps.get(i + 1)?;
        Some((to.status, self.owner(to.status)?))
    }

    /// The notice step named `step` (its name in the flow, 村公示, or its status, VillageNotice)
    /// among the notices `posted` picks; otherwise the names of those notices, for the refusal.
    pub fn find_notice(&self, step: &str, posted: impl Fn(&Step) -> bool) -> Result<&Step, Vec<&str>> {
        let notices = || self.steps.iter().filter(|s| s.notice.is_some() && posted(s));
        let wanted = Status::parse(step);
        notices()
            .find(|s| s.name == step.trim() || Some(s.status) == wanted)
            .ok_or_else(|| notices().map(|s| s.name.as_str()).collect())
    }

    /// The days of the public notice that runs at `s`.
    pub fn notice_days(&self, s: Status) -> Option<u32> {
        self.step(s).and_then(|x| x.notice).map(|n| n.days)
    }

    /// The tier that may put a record into `s`: the step's own tier, or the one that hands it in;
    /// 不予认定 is the deciding tier's, 退出 the township's (the annual update). `None`: `s` is not
    /// a step of this flow.
    pub fn owner(&self, s: Status) -> Option<Tier> {
        match s {
            Status::NotRecognised => Some(self.decides),
            Status::Exited => Some(Tier::Township),
            _ => self.step(s).map(|x| x.handed_in_by.unwrap_or(x.tier)),
        }
    }

    /// The tier that may move a record out of `s`: the tier acting in that step.
    fn leaver(&self, s: Status) -> Option<Tier> {
        match s {
            Status::NotRecognised => Some(self.decides),
            Status::Exited => Some(self.decides.max(Tier::County)),
            _ => self.step(s).map(|x| x.tier),
        }
    }

    /// Whether `writer` may set a record's status from `from` (`None`: a new record) to `to`.
    /// `in_update`: the year is in its annual-update window or reopened for the writer. A tier
    /// above the one a step names may act for it.
    pub fn check_status(&self, writer: Tier, from: Option<Status>, to: Status, in_update: bool) -> Result<(), String> {
        if from == Some(to) {
            return Ok(());
        }
        let Some(owner) = self.owner(to) else {
            return Err(format!("{} ({to:?}) is not a step of this profile's flow", to.label()));
        };
        if writer < owner {
            return Err(match from {
                None => format!(
                    "a {writer} may create a record only in a status it owns; {} ({to:?}) is the {owner}'s to set",
                    self.label(to),
                ),
                Some(f) => format!(
                    "{} ({f:?}) → {} ({to:?}) is the {owner}'s step, not the {writer}'s",
                    self.label(f),
                    self.label(to),
                ),
            });
        }
        let Some(from) = from else { return Ok(()) };
        // A status outside the flow (a record of another profile) is left by the deciding tier.
        let leaver = self.leaver(from).unwrap_or(self.decides);
        if writer >= leaver {
            return Ok(());
        }
        // What a township may still do with a record decided above it: record the exit of a
        // recognised household in the annual update, and start again with one refused.
        let exit = matches!(from, Status::CountyAnnounced | Status::ProvinceFiled) && to == Status::Exited;
        let restart = from == Status::NotRecognised && owner == Tier::Township && to != Status::Exited;
        if (exit && in_update) || restart {
            Ok(())
        } else if exit {
            Err(format!(
                "{} ({from:?}) → {} ({to:?}) is recorded only in the annual update (动态调整)",
                self.label(from),
                to.label()
            ))
        } else {
            Err(format!(
                "the record is at {} ({from:?}), which the {leaver} holds; a {writer} may not move it to {} ({to:?})",
                self.label(from),
                self.label(to)
            ))
        }
    }
}

/// A flow as written in a profile.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    decides: String,
    steps: Vec<RawStep>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    status: String,
    tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handed_in_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notice_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    posted_at: Option<String>,
}

impl TryFrom<RawFlow> for Flow {
    type Error = String;

    /// Every rule a flow must keep, each refusal naming the step and the key.
    fn try_from(raw: RawFlow) -> Result<Flow, String> {
        let decides = parse_tier("decides", &raw.decides)?;
        let mut steps: Vec<Step> = Vec::with_capacity(raw.steps.len());
        for (i, r) in raw.steps.into_iter().enumerate() {
            let at = format!("steps[{i}] ({})", r.name);
            if r.name.trim().is_empty() {
                return Err(format!("steps[{i}].name: a step needs its name"));
            }
            let status = STEP_STATUSES.iter().find(|(n, _)| *n == r.status).map(|(_, s)| *s).ok_or_else(|| {
                format!(
                    "{at}.status: unknown status {:?} (one of {})",
                    r.status,
                    STEP_STATUSES.map(|(n, _)| n).join(", ")
                )
            })?;
            let tier = parse_tier(&format!("{at}.tier"), &r.tier)?;
            let handed_in_by =
                r.handed_in_by.as_deref().map(|t| parse_tier(&format!("{at}.handed_in_by"), t)).transpose()?;
            let notice = match (r.notice_days, r.posted_at.as_deref()) {
                (None, None) => None,
                (Some(days @ 1..=60), Some(level)) => {
                    Some(Notice { days, posted_at: parse_tier(&format!("{at}.posted_at"), level)? })
                }
                (Some(days), Some(_)) => return Err(format!("{at}.notice_days: {days} is not 1–60 days")),
                (Some(_), None) => return Err(format!("{at}.posted_at: a notice needs the level it is posted at")),
                (None, Some(_)) => return Err(format!("{at}.notice_days: posted_at without the notice's days")),
            };
            if let Some(prev) = steps.last() {
                if status <= prev.status {
                    return Err(format!(
                        "{at}.status: {} may not follow {} (the registry's order is {})",
                        r.status,
                        status_name(prev.status),
                        STEP_STATUSES.map(|(n, _)| n).join(" → ")
                    ));
                }
                if tier < prev.tier {
                    return Err(format!(
                        "{at}.tier: the {} acts after the {} of the step before; a flow only goes up",
                        tier_name(tier),
                        tier_name(prev.tier)
                    ));
                }
                if let Some(h) = handed_in_by
                    && (h != prev.tier || h >= tier)
                {
                    return Err(format!(
                        "{at}.handed_in_by: {} does not hand in to the {} (the step before is the {}'s)",
                        tier_name(h),
                        tier_name(tier),
                        tier_name(prev.tier)
                    ));
                }
            } else if status != Status::Applied {
                return Err(format!("{at}.status: a flow begins with applied, not {}", r.status));
            } else if handed_in_by.is_some() {
                return Err(format!("{at}.handed_in_by: nothing hands in the first step"));
            }
            if status < Status::CountyAnnounced && tier > decides {
                return Err(format!(
                    "{at}.tier: the {} acts before the decision, which is the {}'s",
                    tier_name(tier),
                    tier_name(decides)
                ));
            }
            if status == Status::CountyAnnounced && tier != decides {
                return Err(format!(
                    "{at}.tier: recognised is the deciding tier's step ({}), not the {}'s",
                    tier_name(decides),
                    tier_name(tier)
                ));
            }
            if status == Status::ProvinceFiled && tier <= decides {
                return Err(format!("{at}.tier: filed is the step of a tier above the one that decides"));
            }
            if status == Status::CountyReview && handed_in_by.is_none() {
                return Err(format!("{at}.handed_in_by: review is a higher tier's, handed in by the tier below"));
            }
            if status == Status::CountyReview && tier != decides {
                return Err(format!(
                    "{at}.tier: review waits for the deciding tier ({}), not the {}",
                    tier_name(decides),
                    tier_name(tier)
                ));
            }
            steps.push(Step { name: r.name, status, tier, handed_in_by, notice });
        }
        if !steps.iter().any(|s| s.status == Status::CountyAnnounced) {
            return Err("steps: a flow needs its decision, a step with status recognised".into());
        }
        Ok(Flow { decides, steps })
    }
}

impl From<Flow> for RawFlow {
    fn from(f: Flow) -> RawFlow {
        RawFlow {
            decides: tier_name(f.decides).into(),
            steps: f
                .steps
                .into_iter()
                .map(|s| RawStep {
                    name: s.name,
                    status: status_name(s.status).into(),
                    tier: tier_name(s.tier).into(),
                    handed_in_by: s.handed_in_by.map(|t| tier_name(t).into()),
                    notice_days: s.notice.map(|n| n.days),
                    posted_at: s.notice.map(|n| tier_name(n.posted_at).into()),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;
    use Tier::*;

    fn flow(text: &str) -> Result<Flow, String> {
        #[derive(Deserialize)]
        struct Doc {
            flow: Flow,
        }
        toml::from_str::<Doc>(text).map(|d| d.flow).map_err(|e| e.to_string())
    }

    const TOWNSHIP_DECIDES: &str = r#"
        [flow]
        decides = "township"
        steps = [
          { name = "申请", status = "applied", tier = "township" },
          { name = "镇公告", status = "township_notice", tier = "township", notice_days = 7, posted_at = "township" },
          { name = "镇级审定", status = "recognised", tier = "township" },
          { name = "区直备案", status = "filed", tier = "county" },
        ]"#;

    #[test]
    fn the_national_flow_is_the_table_the_hub_always_had() {
        let f = Flow::national_households(7);
        assert_eq!(f.next(TownshipNotice), Some((CountyReview, Township)), "the township hands in");
        assert_eq!(f.next(CountyReview), Some((CountyAnnounced, County)));
        assert_eq!(f.next(CountyAnnounced), Some((ProvinceFiled, Province)));
        assert_eq!(f.next(ProvinceFiled), None);
        assert_eq!(f.notice_days(VillageNotice), Some(7));
        assert_eq!(f.notice_days(TownshipReview), None);
        assert_eq!(f.awaiting_decision(), Some(CountyReview));
        assert_eq!(f.files(), Some(Province));
        assert!(f.check_status(Township, Some(TownshipNotice), CountyReview, false).is_ok());
        assert!(f.check_status(Township, Some(CountyReview), CountyAnnounced, false).is_err());
        assert!(f.check_status(County, Some(CountyReview), CountyAnnounced, false).is_ok());
        assert!(f.check_status(County, Some(CountyAnnounced), ProvinceFiled, false).is_err());
        assert!(f.check_status(Township, Some(CountyAnnounced), Exited, true).is_ok());
        assert!(f.check_status(Township, Some(CountyAnnounced), Exited, false).is_err());
        assert!(f.check_status(Township, Some(NotRecognised), Applied, false).is_ok());
        // Serialised and read back, it is the same flow.
        let text = toml::to_string(&std::collections::BTreeMap::from([("flow", f.clone())])).unwrap();
        assert_eq!(flow(&text).unwrap(), f);
    }

    #[test]
    fn a_township_that_decides_recognises_and_the_district_files() {
        let f = flow(TOWNSHIP_DECIDES).unwrap();
        assert_eq!(f.decides(), Township);
        assert_eq!(f.files(), Some(County));
        assert_eq!(f.awaiting_decision(), None);
        assert_eq!(f.next(TownshipNotice), Some((CountyAnnounced, Township)));
        assert_eq!(f.label(CountyAnnounced), "镇级审定");
        assert!(f.check_status(Township, Some(TownshipNotice), CountyAnnounced, false).is_ok());
        assert!(f.check_status(Township, Some(TownshipNotice), NotRecognised, false).is_ok());
        assert!(f.check_status(Township, Some(CountyAnnounced), ProvinceFiled, false).is_err());
        assert!(f.check_status(County, Some(CountyAnnounced), ProvinceFiled, false).is_ok());
        let err = f.check_status(Township, Some(TownshipNotice), CountyReview, false).unwrap_err();
        assert!(err.contains("not a step"), "{err}");
    }

    #[test]
    fn a_bad_flow_is_refused_naming_the_key() {
        let cases = [
            (TOWNSHIP_DECIDES.replace("tier = \"county\"", "tier = \"district\""), "steps[3] (区直备案).tier"),
            (TOWNSHIP_DECIDES.replace("\"filed\"", "\"archived\""), "steps[3] (区直备案).status"),
            (TOWNSHIP_DECIDES.replace("decides = \"township\"", "decides = \"county\""), "steps[2] (镇级审定).tier"),
            (TOWNSHIP_DECIDES.replace(", posted_at = \"township\"", ""), "posted_at"),
            (TOWNSHIP_DECIDES.replace("notice_days = 7", "notice_days = 0"), "notice_days"),
            (TOWNSHIP_DECIDES.replace("\"applied\"", "\"appraised\""), "steps[0] (申请).status"),
            (
                TOWNSHIP_DECIDES.replace("status = \"recognised\"", "status = \"review\""),
                "steps[2] (镇级审定).handed_in_by",
            ),
            (TOWNSHIP_DECIDES.replace("tier = \"township\" }", "tier = \"township\", quorum = 3 }"), "quorum"),
        ];
        for (text, key) in cases {
            let err = flow(&text).unwrap_err();
            assert!(err.contains(key), "{key}: {err}");
        }
        let no_decision =
            TOWNSHIP_DECIDES.replace("{ name = \"镇级审定\", status = \"recognised\", tier = \"township\" },", "");
        assert!(flow(&no_decision).unwrap_err().contains("recognised"));
    }
}
