//! Who is speaking: a signed request checked against the children this hub enrolled, through
//! the trust chain (certificate, revocation, equivocation hold, region).

use crate::error::HubError;
use crate::state::Hub;
use ed25519_dalek::VerifyingKey;
use jianka_shared::RegionCode;
use jianka_shared::protocol::{ErrorCode, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIME, MAX_CLOCK_SKEW_SECS};
use jianka_shared::trust::{self, Certificate, KeyId};

impl Hub {
    /// Checks the three auth headers against the children this hub enrolled.
    pub async fn authenticate(
        &self,
        method: &str,
        path_and_query: &str,
        key: Option<&str>,
        time: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Sender, HubError> {
        let (Some(key), Some(time), Some(sig)) = (key, time, signature) else {
            return Err(HubError::new(
                ErrorCode::Unauthenticated,
                format!("missing authentication headers {HEADER_KEY}, {HEADER_TIME}, {HEADER_SIGNATURE}"),
            ));
        };
        let key_id = KeyId::parse(key).ok_or_else(|| {
            HubError::new(ErrorCode::Unauthenticated, format!("{HEADER_KEY} {key:?} is not 16 hex digits"))
        })?;
        let t: i64 = time.trim().parse().map_err(|_| {
            HubError::new(ErrorCode::Unauthenticated, format!("{HEADER_TIME} {time:?} is not Unix seconds"))
        })?;
        let now = self.now_secs();
        if (t - now).abs() > MAX_CLOCK_SKEW_SECS {
            return Err(HubError::new(
                ErrorCode::ClockSkew,
                format!("request time {t} is {}s away from the hub's clock {now}; fix the node's clock", t - now),
            ));
        }
        let Sender { region, key: vk, .. } = self.enrolled(key_id).await?;
        if !trust::verify_request(&vk, method, path_and_query, body, t, sig) {
            return Err(HubError::new(
                ErrorCode::BadSignature,
                format!("request signature does not verify for key {key_id} over {method} {path_and_query}"),
            ));
        }
        Ok(Sender { region, key_id, key: vk })
    }

    /// The enrolled, unrevoked child speaking with `key_id`, its certificate checked against this
    /// hub's key: for signed requests and for files that arrive on a USB stick.
    pub async fn enrolled(&self, key_id: KeyId) -> Result<Sender, HubError> {
        let row = self.store.cert(&key_id.to_string()).await?;
        let Some(row) = row else {
            return Err(HubError::new(
                ErrorCode::UnknownKey,
                format!("key {key_id} is not enrolled at hub {}", self.region()),
            ));
        };
        // Flags are read fail closed by the store: a value that does not decode counts as set.
        if row.revoked {
            let reason = row.revoked_reason.clone();
            return Err(HubError::new(
                ErrorCode::RevokedKey,
                format!(
                    "key {key_id} was revoked by the {} hub {} (reason: {}); it is refused for good — the {} must \
                     enroll a new key",
                    self.region().tier(),
                    self.region(),
                    reason.unwrap_or_default(),
                    self.region().tier()
                ),
            ));
        }
        if row.equivocating {
            return Err(HubError::new(
                ErrorCode::Equivocation,
                format!(
                    "key {key_id} sent two different change sets under one sequence number and is held until the \
                     county officer has looked at it (`jianka-hub equivocations list`, then `equivocations clear`); nothing sent since \
                     was applied — call the county's IT officer"
                ),
            ));
        }
        let cert: Certificate = serde_json::from_str(&row.cert)
            .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored certificate unreadable: {e}")))?;
        let vk = trust::verify_child(&cert, &self.key.verifying_key(), self.today())
            .map_err(|e| HubError::new(ErrorCode::UnknownKey, e.to_string()))?;
        if !self.region().contains(&cert.subject) {
            return Err(HubError::new(
                ErrorCode::OutsideRegion,
                format!("{} is outside hub region {}", cert.subject, self.region()),
            ));
        }
        Ok(Sender { region: cert.subject, key_id, key: vk })
    }
}

/// An authenticated caller: a child enrolled at this hub.
#[derive(Debug, Clone)]
pub struct Sender {
    pub region: RegionCode,
    pub key_id: KeyId,
    pub key: VerifyingKey,
}
