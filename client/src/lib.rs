//! `jianka-client`: the sender's side of every signed link to a parent hub — a township node to
//! its county, a county to its province. Only HTTP and pure logic: no files, no database; the
//! caller keeps the line's pace and draws its own progress.
//!
//! [`HubClient`] signs every request and retries what may succeed later with exponential backoff
//! and jitter ([`HubError::retryable`]); [`Pace`] is the line's measured rate, which sizes every
//! request; [`HubClient::push`] sends one change set whole or in resumable pieces, asking the hub
//! what it holds before resending; [`HubClient::pull_page`] asks for feedback pages the line
//! carries inside its timeout.

mod error;
mod feedback;
mod pace;
mod push;
mod signed;

pub use error::HubError;
pub use feedback::FEEDBACK_PAGE_MAX;
pub use pace::{FIRST_PIECE, Pace};
pub use push::Sizes;
pub use signed::{HubClient, Now, signed};
