//! The hub's one error type and its mapping to HTTP answers (`ApiError{code,message}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jianka_shared::protocol::{ApiError, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct HubError {
    pub code: ErrorCode,
    pub message: String,
}

impl HubError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HubError { code, message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::Unauthenticated | ErrorCode::UnknownKey | ErrorCode::RevokedKey | ErrorCode::BadSignature => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::ClockSkew => StatusCode::UNAUTHORIZED,
            ErrorCode::OutsideRegion => StatusCode::FORBIDDEN,
            ErrorCode::Equivocation | ErrorCode::BrokenChain | ErrorCode::YearLocked => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Malformed | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for HubError {
    fn from(e: crate::store::StoreError) -> Self {
        if let crate::store::StoreError::Busy(_) = e {
            tracing::warn!(error = %e, "database busy");
            return HubError::new(
                ErrorCode::Unavailable,
                "the database is busy with another writer; the change was not applied, retry later",
            );
        }
        tracing::error!(error = %e, "storage failure");
        HubError::new(ErrorCode::Internal, "storage failure; the change was not applied, retry later")
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(ApiError { code: self.code, message: self.message })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_busy_database_is_retry_later_and_any_other_failure_internal() {
        let busy = HubError::from(StoreError::Busy("database is locked".into()));
        assert_eq!((busy.code, busy.status()), (ErrorCode::Unavailable, StatusCode::SERVICE_UNAVAILABLE));
        assert!(!busy.message.contains("locked"), "the detail goes to the log, not the client");
        let other = HubError::from(StoreError::Db("disk I/O error".into()));
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
