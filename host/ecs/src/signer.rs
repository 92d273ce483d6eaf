//! RPC-style request signing, signature version 1.0 (HMAC-SHA1).
//!
//! The algorithm (shared/reference/ecs-openapi.md §1.3–1.4):
//! 1. take every parameter except `Signature` (query and form body together, empty values too);
//! 2. sort by raw name; percent-encode names and values per RFC 3986 (`A-Za-z0-9-_.~` kept,
//!    space `%20`, `*` `%2A`, upper-case hex); join `name=value` with `&`;
//! 3. `StringToSign = METHOD & %2F & percentEncode(canonical query)`;
//! 4. `Signature = base64(HMAC-SHA1(secret + "&", StringToSign))`.
//!
//! The emulator verifies with the same functions; a test cross-checks them against the official
//! Python SDK so neither side can drift unnoticed.
use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

/// Request parameters, sorted by name (byte order = the SDKs' code-point order).
pub type Params = BTreeMap<String, String>;

/// Everything but RFC 3986 unreserved characters is encoded.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one name or value the way the RPC signature requires.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// The canonicalized query string: sorted, encoded `name=value` pairs joined by `&`.
/// `Signature` itself is left out.
pub fn canonical_query(params: &Params) -> String {
    let mut out = String::new();
    for (name, value) in params.iter().filter(|(n, _)| n.as_str() != "Signature") {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// `METHOD&%2F&percentEncode(canonical query)`.
pub fn string_to_sign(method: &str, params: &Params) -> String {
    format!("{method}&%2F&{}", percent_encode(&canonical_query(params)))
}

/// Base64 of HMAC-SHA1 over `message` with `key` (raw; no `&` appended).
pub fn hmac_sha1_base64(key: &str, message: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The signature of a string-to-sign under an AccessKey secret (key = `secret&`).
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    hmac_sha1_base64(&format!("{access_key_secret}&"), string_to_sign)
}

/// The per-request values that make a signature unique.
#[derive(Debug, Clone)]
pub struct SigningContext<'a> {
    /// `GET` or `POST`: part of the string-to-sign.
    pub method: &'a str,
    /// Unique per request (the server rejects reuse).
    pub nonce: &'a str,
    /// UTC `yyyy-MM-ddTHH:mm:ssZ`.
    pub timestamp: &'a str,
}

/// Adds the common signature parameters (`AccessKeyId`, `SignatureMethod`, `SignatureVersion`,
/// `SignatureNonce`, `Timestamp`, `SecurityToken` for STS credentials, and `Format=JSON` unless
/// set) to `params`, signs them and inserts `Signature`. Returns the string-to-sign so a
/// `SignatureDoesNotMatch` answer can be diagnosed by comparing it with the server's.
pub fn sign(
    params: &mut Params,
    ctx: &SigningContext<'_>,
    access_key_id: &str,
    access_key_secret: &str,
    security_token: Option<&str>,
) -> String {
    params.remove("Signature");
    params
        .entry("Format".into())
        .or_insert_with(|| "JSON".into());
    params.insert("AccessKeyId".into(), access_key_id.into());
    params.insert("SignatureMethod".into(), "HMAC-SHA1".into());
    params.insert("SignatureVersion".into(), "1.0".into());
    params.insert("SignatureNonce".into(), ctx.nonce.into());
    params.insert("Timestamp".into(), ctx.timestamp.into());
    if let Some(token) = security_token {
        params.insert("SecurityToken".into(), token.into());
    }
    let sts = string_to_sign(ctx.method, params);
    params.insert("Signature".into(), signature(access_key_secret, &sts));
    sts
}

/// The current time in the signature's timestamp format.
pub fn timestamp_now() -> String {
    format_timestamp(time::OffsetDateTime::now_utc())
}

/// Formats a time as `yyyy-MM-ddTHH:mm:ssZ` (UTC).
pub fn format_timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses `yyyy-MM-ddTHH:mm:ssZ` (the only form the SDKs send).
pub fn parse_timestamp(s: &str) -> Option<time::OffsetDateTime> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(s, fmt)
        .ok()
        .map(|t| t.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn describe_regions_example(timestamp_name: &str) -> Params {
        params(&[
            (timestamp_name, "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ])
    }

    #[test]
    fn official_vector_a_timestamp_capital_s() {
        let p = describe_regions_example("TimeStamp");
        let sts = string_to_sign("GET", &p);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26TimeStamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            signature("testsecret", &sts),
            "CT9X0VtwR86fNWSnsc6v8YGOjuE="
        );
    }

    #[test]
    fn official_vector_b_timestamp() {
        let p = describe_regions_example("Timestamp");
        let sts = string_to_sign("GET", &p);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        // The published URL form of the same signature.
        assert_eq!(
            percent_encode("OLeaidS1JvxuMvnyHOwuJ+uX5qY="),
            "OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D"
        );
    }

    #[test]
    fn hmac_primitive_vectors() {
        assert_eq!(
            hmac_sha1_base64("secret", "source"),
            "Jv4yi8SobFhg5t1C7nWLbhBSFZQ="
        );
        assert_eq!(
            hmac_sha1_base64("secret", "中文"),
            "CqCYIa39h9SSWuXnTz8F5hh9UPA="
        );
        assert_eq!(
            hmac_sha1_base64("secret", "中文unicode"),
            "szlfHs3WVaO/HgY3Cg7/uyXDaRw="
        );
    }

    #[test]
    fn encoding_rules() {
        assert_eq!(
            percent_encode("a b*c~d+e/f=g&h"),
            "a%20b%2Ac~d%2Be%2Ff%3Dg%26h"
        );
        assert_eq!(percent_encode("!'()"), "%21%27%28%29");
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
        assert_eq!(percent_encode("-_.~"), "-_.~");
    }

    #[test]
    fn empty_values_are_signed_and_signature_excluded() {
        let p = params(&[("B", ""), ("A", "1"), ("Signature", "x")]);
        assert_eq!(canonical_query(&p), "A=1&B=");
    }

    #[test]
    fn sign_adds_common_parameters_and_sts_token() {
        let mut p = params(&[("Action", "DescribeRegions"), ("Version", "2014-05-26")]);
        let ctx = SigningContext {
            method: "POST",
            nonce: "n1",
            timestamp: "2020-01-01T00:00:00Z",
        };
        let sts = sign(&mut p, &ctx, "ak", "sk", Some("tok"));
        assert_eq!(p["SecurityToken"], "tok");
        assert_eq!(p["Format"], "JSON");
        assert!(sts.starts_with("POST&%2F&AccessKeyId%3Dak%26Action%3DDescribeRegions"));
        assert!(sts.contains("SecurityToken%3Dtok"));
        assert_eq!(p["Signature"], signature("sk", &sts));
    }

    #[test]
    fn timestamp_round_trip() {
        let t = parse_timestamp("2016-02-23T12:46:24Z").unwrap();
        assert_eq!(format_timestamp(t), "2016-02-23T12:46:24Z");
        assert!(parse_timestamp("2016-02-23 12:46:24").is_none());
    }
}
