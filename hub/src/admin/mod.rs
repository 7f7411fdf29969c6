//! Officer commands: setting up, enrollment and revocation, chunked uploads, conflicts, sign-off
//! (with the 贫困县监测表), and reports (allocations and 微调: `crate::allocation`). The CLI (`main.rs`) only parses flags and calls these.

mod children;
mod conflicts;
mod decide;
pub mod export;
mod init;
mod monitoring;
mod notice;
mod report;
pub mod scale;
mod signoff;
mod uploads;

pub use children::EquivocationView;
pub use conflicts::ConflictView;
pub use decide::{Filing, HandDecision};
pub use init::{InitOptions, Initialised, init, install_chain};
pub use monitoring::read_monitoring_file;
pub use report::{Report, VillageLine, YearReport};
pub use signoff::summarise;
