//! OAuth access tokens as Google's and Azure's token endpoints hand them
//! out, kept until five minutes before they expire.

use std::time::Duration;

use blocking_reqwest::blocking::RequestBuilder;

/// Tokens are fetched again this long before they expire.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// A token and when it expires (seconds since the epoch).
#[derive(Debug, Clone)]
pub struct OAuthToken {
    /// What goes after `Bearer `.
    pub value: String,
    /// When it expires.
    pub expires_at: u64,
}

impl OAuthToken {
    /// Whether it may still be sent at `now` rather than renewed.
    pub fn fresh_at(&self, now: u64) -> bool {
        now + RENEW_BEFORE_EXPIRY.as_secs() < self.expires_at
    }
}

/// Sends `request` and reads `{"access_token": ..., "expires_in": seconds}`
/// (a number from Google, a string from Azure), or says why not.
pub fn token_answer(request: RequestBuilder, now: u64) -> Result<OAuthToken, String> {
    let response = request.send().map_err(|error| error.to_string())?;
    let status = response.status();
    let body = response.text().map_err(|error| error.to_string())?;
    if !status.is_success() {
        return Err(format!("answered {}: {}", status.as_u16(), body.trim()));
    }
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|error| format!("unreadable token: {error}"))?;
    let value = json.get("access_token").and_then(|token| token.as_str()).ok_or("the answer has no access_token")?;
    let lifetime = match json.get("expires_in") {
        Some(serde_json::Value::Number(seconds)) => seconds.as_u64(),
        Some(serde_json::Value::String(seconds)) => seconds.parse().ok(),
        _ => None,
    };
    Ok(OAuthToken { value: value.to_string(), expires_at: now + lifetime.unwrap_or(3600) })
}
