//! What a request to the hub can end in, and which of those are worth trying again.

use jianka_shared::protocol::ErrorCode;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot reach the hub ({method} {path}): {message}")]
    Transport { method: &'static str, path: String, message: String },
    #[error("hub refused {method} {path} ({status}, {code:?}): {message}")]
    Refused { method: &'static str, path: String, status: u16, code: Option<ErrorCode>, message: String },
    #[error("hub answered {method} {path} with an unreadable body: {message}")]
    BadAnswer { method: &'static str, path: String, message: String },
    /// Feedback not signed by the parent hub (or no key to check it with): refused, not applied.
    #[error("refused the feedback of {path}: {message}")]
    Unverified { path: String, message: String },
}

impl HubError {
    /// Worth trying again: the link or the hub may recover.
    pub fn retryable(&self) -> bool {
        match self {
            HubError::Transport { .. } | HubError::BadAnswer { .. } => true,
            HubError::Unverified { .. } => false,
            HubError::Refused { status, code, .. } => {
                *status >= 500 || *status == 429 || *status == 408 || *code == Some(ErrorCode::ClockSkew)
            }
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            HubError::Refused { code, .. } => *code,
            _ => None,
        }
    }

    /// A request that failed on the link after running its whole timeout: the line is slower
    /// than the request's size assumed (a dropped connection fails at once instead).
    pub(crate) fn timed_out(&self, sent: Instant, timeout: Duration) -> bool {
        matches!(self, HubError::Transport { .. }) && sent.elapsed() >= timeout
    }
}
