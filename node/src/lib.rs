//! Jianka township node (`jianka-node`): the township's local SQLite replica of its households,
//! members and villages; data entry (import, edits, workflow); a durable outbox of signed change
//! sets; and sync with the county hub over unreliable links (or a USB stick).
//!
//! Module map: [`clock`] (controllable time), [`config`], [`db`] (schema, migrations),
//! [`store`] (replica + change capture, one transaction), [`outbox`] (sealing change sets),
//! [`sync`] (one pass; its requests go through `jianka_client`), [`pace`] (the line's rate, kept),
//! [`daemon`] (windows, shutdown), [`feedback`] (applying county decisions), [`import`]/[`table`] (扶贫手册, 贫困村登记表),
//! [`masking`] (personal numbers in what is printed), [`edit`], [`workflow`], [`adjust`] (annual
//! update), [`bundle`] (USB), [`report`] (status, verify), [`vocabulary`] (how statuses are named),
//! [`progress`] (bars on a terminal), [`cli`] (printing through `jianka_term`: a closed pipe ends quietly).

pub mod adjust;
pub mod assistance;
pub mod bundle;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod db;
pub mod edit;
pub mod export;
pub mod feedback;
pub mod import;
pub mod masking;
pub mod node;
pub mod notice;
pub mod outbox;
pub mod pace;
pub mod progress;
pub mod report;
pub mod store;
pub mod sync;
pub mod table;
pub mod village_flow;
pub mod vocabulary;
pub mod workflow;

pub use node::Node;
