//! AWS Signature Version 4 for S3 requests without a body (the GETs that
//! list and read a repository): the `Authorization` header, built from the
//! canonical request as AWS specifies it, with ring's HMAC-SHA256.

use ring::{digest, hmac};

use super::aws_credentials::AwsCredentials;
use crate::utc_time::UtcTime;

/// The SHA-256 of an empty body, which a GET declares in
/// `x-amz-content-sha256`.
pub const EMPTY_BODY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What is signed of a request.
pub struct UnsignedRequest<'a> {
    /// `GET`.
    pub method: &'a str,
    /// The `Host` header: `host` or `host:port`.
    pub host: &'a str,
    /// The path, already URI-encoded as it is sent (see [`uri_encode`]).
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(&'a str, &'a str)],
    /// Further headers to sign (lower-case names), such as `range`.
    pub headers: &'a [(&'a str, &'a str)],
}

/// The headers to send: `x-amz-date`, `x-amz-content-sha256`,
/// `x-amz-security-token` when the credentials have one, and
/// `authorization`.
pub fn sign(
    request: &UnsignedRequest<'_>,
    credentials: &AwsCredentials,
    region: &str,
    time: UtcTime,
) -> Vec<(&'static str, String)> {
    let date = format!("{:04}{:02}{:02}", time.year, time.month, time.day);
    let timestamp = format!("{date}T{:02}{:02}{:02}Z", time.hour, time.minute, time.second);
    let mut headers: Vec<(String, String)> = vec![
        ("host".to_string(), request.host.to_string()),
        ("x-amz-content-sha256".to_string(), EMPTY_BODY_SHA256.to_string()),
        ("x-amz-date".to_string(), timestamp.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".to_string(), token.clone()));
    }
    headers.extend(request.headers.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_string())));
    headers.sort();
    let signed_headers: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    let signed_headers = signed_headers.join(";");
    let canonical_headers: String = headers.iter().map(|(name, value)| format!("{name}:{value}\n")).collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{EMPTY_BODY_SHA256}",
        request.method,
        request.path,
        canonical_query(request.query)
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{}", hex(digest_of(&canonical_request)));
    let key = [date.as_str(), region, "s3", "aws4_request"]
        .iter()
        .fold(format!("AWS4{}", credentials.secret_access_key).into_bytes(), |key, part| {
            hmac_of(&key, part.as_bytes()).as_ref().to_vec()
        });
    let signature = hex(hmac_of(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    let mut sent = vec![("x-amz-date", timestamp), ("x-amz-content-sha256", EMPTY_BODY_SHA256.to_string())];
    if let Some(token) = &credentials.session_token {
        sent.push(("x-amz-security-token", token.clone()));
    }
    sent.push(("authorization", authorization));
    sent
}

/// The query string as signed and as sent: parameters sorted, names and
/// values URI-encoded.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(name, value)| (uri_encode(name, true), uri_encode(value, true))).collect();
    pairs.sort();
    pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

/// AWS's URI encoding: every byte but `A-Z a-z 0-9 - . _ ~` as `%XX`, and
/// `/` too unless `encode_slash` is false (object key paths).
pub fn uri_encode(text: &str, encode_slash: bool) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => encoded.push(byte as char),
            b'/' if !encode_slash => encoded.push('/'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

fn digest_of(text: &str) -> digest::Digest {
    digest::digest(&digest::SHA256, text.as_bytes())
}

fn hmac_of(key: &[u8], message: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message)
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own worked example of a signed GET Object (S3 API reference,
    /// "Signature calculations for the Authorization header").
    #[test]
    fn signs_the_example_of_the_s3_documentation() {
        let credentials = AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_string(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string(),
            session_token: None,
        };
        let request = UnsignedRequest {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &[("range", "bytes=0-9")],
        };
        // 2013-05-24T00:00:00Z
        let time = UtcTime::from_unix(1_369_353_600, 0);
        let headers = sign(&request, &credentials, "us-east-1", time);
        let header = |name: &str| headers.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str());
        assert_eq!(header("x-amz-date"), Some("20130524T000000Z"));
        assert_eq!(
            header("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
                 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            )
        );
        assert_eq!(header("x-amz-security-token"), None);
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let credentials = AwsCredentials {
            access_key_id: "ASIAEXAMPLE".to_string(),
            secret_access_key: "secret".to_string(),
            session_token: Some("token".to_string()),
        };
        let request = UnsignedRequest { method: "GET", host: "h", path: "/b", query: &[], headers: &[] };
        let headers = sign(&request, &credentials, "eu-west-1", UtcTime::from_unix(0, 0));
        assert!(headers.contains(&("x-amz-security-token", "token".to_string())));
        let authorization = &headers.last().unwrap().1;
        assert!(authorization.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"));
        assert!(authorization.contains("/19700101/eu-west-1/s3/aws4_request"));
    }

    #[test]
    fn queries_and_keys_are_encoded_as_aws_wants() {
        assert_eq!(
            canonical_query(&[("prefix", "models/a b/"), ("list-type", "2")]),
            "list-type=2&prefix=models%2Fa%20b%2F"
        );
        assert_eq!(uri_encode("repo/mlp v2/1/model.onnx", false), "repo/mlp%20v2/1/model.onnx");
        assert_eq!(uri_encode("a+b=c~", true), "a%2Bb%3Dc~");
    }
}
