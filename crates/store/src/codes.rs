//! Trip codes (精准赋码): one per crew member, a compact signed token the driver opens on
//! their own phone by a link, without an account. The token carries no personal data: the
//! trip, the crew member's place in it, the class and colour at issue, and an expiry;
//! `base64url(payload).base64url(ed25519 signature)`.

use crate::Vault;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use baton_domain::Error;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TripCode {
    /// The trip.
    pub t: Uuid,
    /// The crew member's place in the trip (0 = driver).
    pub s: i64,
    /// The control class at issue.
    pub k: String,
    /// Health-code colour at check-in.
    pub h: Option<String>,
    /// Expiry (unix seconds).
    pub e: i64,
}

pub fn issue(vault: &Vault, code: &TripCode) -> Result<String, Error> {
    let payload = serde_json::to_vec(code).map_err(Error::internal)?;
    let sig = vault.sign(&payload);
    Ok(format!("{}.{}", B64.encode(&payload), B64.encode(sig)))
}

fn refused(code: &'static str, zh: &str, en: &str) -> Error {
    Error::conflict(code, zh, en)
}

/// Verify a token: well formed, signed by this county, not expired.
pub fn open(vault: &Vault, token: &str, now: DateTime<Utc>) -> Result<TripCode, Error> {
    let (p, s) = token.split_once('.').ok_or_else(|| refused("code_malformed", "码格式无效", "the code is malformed"))?;
    let payload = B64.decode(p).map_err(|_| refused("code_malformed", "码格式无效", "the code is malformed"))?;
    let sig = B64.decode(s).map_err(|_| refused("code_malformed", "码格式无效", "the code is malformed"))?;
    if !vault.verify(&payload, &sig) {
        return Err(refused("code_forged", "码签名无效，可能被伪造或篡改", "the code's signature is invalid: forged or altered"));
    }
    let code: TripCode = serde_json::from_slice(&payload).map_err(|_| refused("code_malformed", "码格式无效", "the code is malformed"))?;
    if now.timestamp() > code.e {
        return Err(refused("code_expired", "码已过期", "the code has expired"));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyring;

    #[test]
    fn signed_codes_open_and_forged_truncated_expired_ones_do_not() {
        let vault = Vault::new(&Keyring::generate()).unwrap();
        let now = Utc::now();
        let code = TripCode { t: Uuid::now_v7(), s: 0, k: "closed_loop".into(), h: Some("yellow".into()), e: now.timestamp() + 3600 };
        let token = issue(&vault, &code).unwrap();
        assert_eq!(open(&vault, &token, now).unwrap(), code);
        // Short enough for a small QR, and nothing in it but the trip reference and the class.
        assert!(token.len() < 300, "{}", token.len());
        let payload: serde_json::Value = serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        let keys: Vec<&String> = payload.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["e", "h", "k", "s", "t"]);
        // Another county's key does not verify it.
        let other = Vault::new(&Keyring::generate()).unwrap();
        assert_eq!(open(&other, &token, now).unwrap_err().code(), "code_forged");
        // An edited payload with the old signature is refused.
        let (p, s) = token.split_once('.').unwrap();
        let mut forged = code.clone();
        forged.k = "pass".into();
        let forged = format!("{}.{s}", B64.encode(serde_json::to_vec(&forged).unwrap()));
        assert_eq!(open(&vault, &forged, now).unwrap_err().code(), "code_forged");
        let truncated = open(&vault, &token[..token.len() - 4], now).unwrap_err();
        assert!(["code_forged", "code_malformed"].contains(&truncated.code()), "{truncated:?}");
        assert_eq!(open(&vault, p, now).unwrap_err().code(), "code_malformed");
        assert_eq!(open(&vault, "x.y", now).unwrap_err().code(), "code_malformed");
        // Expiry, on the clock given.
        assert_eq!(open(&vault, &token, now + chrono::Duration::hours(2)).unwrap_err().code(), "code_expired");
    }
}
