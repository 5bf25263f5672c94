//! OAuth access tokens as Google's and Azure's token endpoints hand them
//! out.

use blocking_reqwest::blocking::RequestBuilder;

use super::expiring::Expiring;

/// Sends `request` and reads `{"access_token": ..., "expires_in": seconds}`
/// (a number from Google, a string from Azure), or says why not.
pub fn token_answer(request: RequestBuilder, now: u64) -> Result<Expiring<String>, String> {
    let json = json_answer(request)?;
    let value = json.get("access_token").and_then(|token| token.as_str()).ok_or("the answer has no access_token")?;
    let lifetime = match json.get("expires_in") {
        Some(serde_json::Value::Number(seconds)) => seconds.as_u64(),
        Some(serde_json::Value::String(seconds)) => seconds.parse().ok(),
        _ => None,
    };
    Ok(Expiring { value: value.to_string(), expires_at: Some(now + lifetime.unwrap_or(3600)) })
}

/// Sends `request` and reads its successful JSON answer, or says why not.
pub fn json_answer(request: RequestBuilder) -> Result<serde_json::Value, String> {
    let body = text_answer(request)?;
    serde_json::from_str(&body).map_err(|error| format!("unreadable token: {error}"))
}

/// Sends `request` and reads the body of its successful answer, or says why
/// not.
pub fn text_answer(request: RequestBuilder) -> Result<String, String> {
    let response = request.send().map_err(|error| error.to_string())?;
    let status = response.status();
    let body = response.text().map_err(|error| error.to_string())?;
    if !status.is_success() {
        return Err(format!("answered {}: {}", status.as_u16(), body.trim()));
    }
    Ok(body)
}
