//! Signature V3 (`ACS3-HMAC-SHA256`, reference §2), so clients of the newer SDK generation can
//! use the emulator too. The provisioner's own client signs V1 (HMAC-SHA1).
//!
//! `CanonicalRequest = METHOD \n / \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n
//! x-acs-content-sha256`; `StringToSign = "ACS3-HMAC-SHA256\n" + hex(sha256(CanonicalRequest))`;
//! `Signature = hex(HMAC-SHA256(secret, StringToSign))` — headers as listed in `SignedHeaders`.
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::nonce::NonceCache;
use super::config::Account;
use super::failure::ApiFailure;
use ecsp_ecs::signer::{self, Params};

const ALGORITHM: &str = "ACS3-HMAC-SHA256";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex HMAC-SHA256 with the raw secret as key.
pub(crate) fn hmac_sha256_hex(secret: &str, message: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The parsed `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
#[derive(Debug, PartialEq)]
pub(crate) struct Authorization {
    pub access_key_id: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses a V3 `Authorization` header; `None` if it is not V3 at all.
pub(crate) fn parse_authorization(value: &str) -> Option<Result<Authorization, ApiFailure>> {
    let rest = value.strip_prefix(ALGORITHM)?.trim();
    let mut fields = std::collections::HashMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            fields.insert(k.trim(), v.trim());
        }
    }
    let (Some(cred), Some(headers), Some(sig)) = (
        fields.get("Credential"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    ) else {
        return Some(Err(ApiFailure::new(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Alibaba Cloud standards.",
        )));
    };
    Some(Ok(Authorization {
        access_key_id: cred.to_string(),
        signed_headers: headers
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        signature: sig.to_string(),
    }))
}

/// `name:v1,v2\n` for each signed header (values of a repeated header sorted and joined).
fn canonical_headers(headers: &HeaderMap, signed: &[String]) -> String {
    let mut names: Vec<&String> = signed.iter().collect();
    names.sort();
    names.dedup();
    names
        .iter()
        .map(|name| {
            let mut values: Vec<&str> = headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .collect();
            values.sort_unstable();
            format!("{name}:{}\n", values.join(","))
        })
        .collect()
}

/// The canonical request for `method` at path `/` with the URL `query`.
pub(crate) fn canonical_request(
    method: &str,
    query: &Params,
    headers: &HeaderMap,
    signed: &[String],
    payload_hash: &str,
) -> String {
    let mut names: Vec<&String> = signed.iter().collect();
    names.sort();
    names.dedup();
    let signed_list: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    format!(
        "{method}\n/\n{}\n{}\n{}\n{payload_hash}",
        signer::canonical_query(query),
        canonical_headers(headers, signed),
        signed_list.join(";")
    )
}

/// `ACS3-HMAC-SHA256\n` + hex(sha256(canonical request)).
pub(crate) fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// What a V3-signed request brings besides its parameters.
pub(crate) struct V3Request<'r> {
    pub method: &'r str,
    pub auth: Authorization,
    /// Only the URL's parameters: the body is covered by its hash.
    pub query: &'r Params,
    pub headers: &'r HeaderMap,
    pub body: &'r [u8],
}

/// Verifies a V3 request; returns the caller's account.
pub(crate) fn verify<'a>(
    req: &V3Request<'_>,
    accounts: &'a [Account],
    tolerance_secs: u64,
    nonces: &mut NonceCache,
) -> Result<&'a Account, ApiFailure> {
    let V3Request {
        method,
        auth,
        query,
        headers,
        body,
    } = req;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for required in [
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ] {
        if header(required).is_none() {
            return Err(ApiFailure::new(
                400,
                "MissingParameter",
                format!("The required header \"{required}\" is not supplied."),
            ));
        }
    }
    let account = accounts
        .iter()
        .find(|a| a.access_key_id == auth.access_key_id)
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
    let date = header("x-acs-date").unwrap_or_default();
    let ts = signer::parse_timestamp(date).ok_or_else(|| {
        ApiFailure::new(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    })?;
    if (time::OffsetDateTime::now_utc() - ts)
        .whole_seconds()
        .unsigned_abs()
        > tolerance_secs
    {
        return Err(ApiFailure::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    let payload_hash = header("x-acs-content-sha256").unwrap_or_default();
    if payload_hash != sha256_hex(body) {
        return Err(ApiFailure::new(
            400,
            "ContentSHA256NotMatched",
            "The x-acs-content-sha256 header does not match the body.",
        ));
    }
    // Every x-acs-* header present must be signed (reference §2.1).
    if let Some(unsigned) = headers
        .keys()
        .map(|k| k.as_str())
        .find(|k| k.starts_with("x-acs-") && !auth.signed_headers.iter().any(|s| s == k))
    {
        return Err(ApiFailure::new(
            400,
            "IncompleteSignature",
            format!("The header {unsigned} must be signed."),
        ));
    }
    let sts = string_to_sign(&canonical_request(
        method,
        query,
        headers,
        &auth.signed_headers,
        payload_hash,
    ));
    if hmac_sha256_hex(&account.access_key_secret, &sts) != auth.signature {
        return Err(ApiFailure::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{}",
                sts.replace('\n', "\\n")
            ),
        ));
    }
    if let Some(token) = &account.security_token
        && header("x-acs-security-token") != Some(token.as_str())
    {
        return Err(ApiFailure::new(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "Specified SecurityToken mismatch with the AccessKey.",
        ));
    }
    let nonce_key = format!(
        "{}\n{}",
        account.access_key_id,
        header("x-acs-signature-nonce").unwrap_or_default()
    );
    if !nonces.insert(
        nonce_key,
        time::OffsetDateTime::now_utc().unix_timestamp(),
        2 * tolerance_secs as i64,
    ) {
        return Err(ApiFailure::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(account)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The official V3 example (reference §2.3).
    #[test]
    fn official_v3_example() {
        let h = headers(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-content-sha256", EMPTY_SHA256),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2014-05-26"),
        ]);
        let q = params(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let auth = parse_authorization(
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0",
        )
        .unwrap()
        .unwrap();
        let cr = canonical_request("POST", &q, &h, &auth.signed_headers, EMPTY_SHA256);
        assert_eq!(
            sha256_hex(cr.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            hmac_sha256_hex("YourAccessKeySecret", &string_to_sign(&cr)),
            auth.signature
        );
    }

    /// darabonba-openapi-util's unit test: repeated header, empty query value (reference §2.4).
    #[test]
    fn sdk_v3_vector_with_repeated_header() {
        let h = headers(&[("x-acs-test", "http"), ("x-acs-test", "https")]);
        let q = params(&[("test", "ok"), ("empty", "")]);
        let cr = canonical_request(
            "GET",
            &q,
            &h,
            &["x-acs-test".to_string()],
            "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23",
        );
        assert_eq!(
            hmac_sha256_hex("secret", &string_to_sign(&cr)),
            "d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1"
        );
    }

    #[test]
    fn rejects_unsigned_acs_headers_and_bad_body_hash() {
        let accounts = vec![Account::new("ak", "sk")];
        let now = signer::timestamp_now();
        let base = [
            ("x-acs-action", "DescribeRegions"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", now.as_str()),
            ("x-acs-signature-nonce", "n1"),
            ("x-acs-content-sha256", EMPTY_SHA256),
        ];
        let signed: Vec<String> = base.iter().map(|(k, _)| k.to_string()).collect();
        let h = headers(&base);
        let q = Params::new();
        let sig = hmac_sha256_hex(
            "sk",
            &string_to_sign(&canonical_request("GET", &q, &h, &signed, EMPTY_SHA256)),
        );
        let auth = Authorization {
            access_key_id: "ak".into(),
            signed_headers: signed.clone(),
            signature: sig,
        };
        let mut nonces = NonceCache::default();
        let mut extra = h.clone();
        extra.insert("x-acs-security-token", HeaderValue::from_static("t"));
        let check =
            |auth: Authorization, headers: &HeaderMap, body: &[u8], nonces: &mut NonceCache| {
                let r = V3Request {
                    method: "GET",
                    auth,
                    query: &q,
                    headers,
                    body,
                };
                verify(&r, &accounts, 900, nonces)
                    .map(|_| "OK".to_string())
                    .unwrap_or_else(|e| e.code)
            };
        let again = || Authorization {
            access_key_id: "ak".into(),
            signed_headers: signed.clone(),
            signature: auth.signature.clone(),
        };
        assert_eq!(check(again(), &h, b"", &mut nonces), "OK");
        assert_eq!(check(again(), &h, b"", &mut nonces), "SignatureNonceUsed");
        assert_eq!(
            check(again(), &h, b"x", &mut nonces),
            "ContentSHA256NotMatched"
        );
        assert_eq!(
            check(again(), &extra, b"", &mut nonces),
            "IncompleteSignature"
        );
        let wrong = Authorization {
            signature: "00".into(),
            ..again()
        };
        assert_eq!(check(wrong, &h, b"", &mut nonces), "SignatureDoesNotMatch");
    }
}
