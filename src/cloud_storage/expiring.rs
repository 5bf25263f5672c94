//! Credentials and tokens that expire: kept until five minutes before
//! they do, then fetched again.

use std::time::Duration;

/// How long before it expires a credential is fetched again.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// A credential and when it expires.
#[derive(Debug, Clone)]
pub struct Expiring<T> {
    /// The credential.
    pub value: T,
    /// When it expires, in seconds since the epoch; None when its issuer
    /// did not say.
    pub expires_at: Option<u64>,
}

impl<T> Expiring<T> {
    /// Whether it may still be used at `now` rather than renewed.
    pub fn fresh_at(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|expires_at| now + RENEW_BEFORE_EXPIRY.as_secs() < expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewed_five_minutes_before_expiry() {
        let expiring = Expiring { value: (), expires_at: Some(1_000) };
        assert!(expiring.fresh_at(699) && !expiring.fresh_at(700));
        assert!(Expiring { value: (), expires_at: None }.fresh_at(u64::MAX / 2));
    }
}
