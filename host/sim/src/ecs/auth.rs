//! Request authentication as the API gateway does it (reference §1.8): required parameters,
//! known AccessKeyId, fresh Timestamp, matching signature, unused nonce — with the real codes.
use super::config::Account;
use super::nonce::NonceCache;
use super::failure::ApiFailure;
use ecsp_ecs::signer::{self, Params};

/// Verifies one request; returns the caller's account on success.
pub(crate) fn verify<'a>(
    method: &str,
    params: &Params,
    accounts: &'a [Account],
    tolerance_secs: u64,
    nonces: &mut NonceCache,
) -> Result<&'a Account, ApiFailure> {
    for required in [
        "AccessKeyId",
        "Signature",
        "SignatureNonce",
        "Version",
        "Action",
    ] {
        if !params.contains_key(required) {
            return Err(ApiFailure::new(
                400,
                "MissingParameter",
                format!(
                    "The input parameter \"{required}\" that is mandatory for processing this request is not supplied."
                ),
            ));
        }
    }
    let timestamp = params.get("Timestamp").or_else(|| params.get("TimeStamp")).ok_or_else(|| {
        ApiFailure::new(
            400,
            "MissingParameter",
            "The input parameter \"Timestamp\" that is mandatory for processing this request is not supplied.",
        )
    })?;
    if params.get("SignatureMethod").map(String::as_str) != Some("HMAC-SHA1") {
        return Err(ApiFailure::new(
            400,
            "InvalidParamater",
            "The specified parameter \"SignatureMethod\" is not valid.",
        ));
    }
    if params.get("SignatureVersion").map(String::as_str) != Some("1.0") {
        return Err(ApiFailure::new(
            400,
            "InvalidParamater",
            "The specified parameter \"SignatureVersion\" is not valid.",
        ));
    }
    let key_id = &params["AccessKeyId"];
    let account = accounts
        .iter()
        .find(|a| &a.access_key_id == key_id)
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
    let ts = signer::parse_timestamp(timestamp).ok_or_else(|| {
        ApiFailure::new(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    })?;
    let now = time::OffsetDateTime::now_utc();
    if (now - ts).whole_seconds().unsigned_abs() > tolerance_secs {
        return Err(ApiFailure::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    let sts = signer::string_to_sign(method, params);
    if signer::signature(&account.access_key_secret, &sts) != params["Signature"] {
        return Err(ApiFailure::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{sts}"
            ),
        ));
    }
    if let Some(token) = &account.security_token
        && params.get("SecurityToken") != Some(token)
    {
        return Err(ApiFailure::new(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "Specified SecurityToken mismatch with the AccessKey.",
        ));
    }
    // Checked after the signature so a forged request cannot burn someone's nonce.
    let nonce_key = format!("{key_id}\n{}", params["SignatureNonce"]);
    if !nonces.insert(nonce_key, now.unix_timestamp(), 2 * tolerance_secs as i64) {
        return Err(ApiFailure::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecsp_ecs::signer::{SigningContext, sign};

    fn accounts() -> Vec<Account> {
        vec![Account::new("ak", "sk")]
    }

    fn signed(secret: &str, nonce: &str, ts: &str) -> Params {
        let mut p: Params = [("Action", "DescribeRegions"), ("Version", "2014-05-26")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        sign(
            &mut p,
            &SigningContext {
                method: "GET",
                nonce,
                timestamp: ts,
            },
            "ak",
            secret,
            None,
        );
        p
    }

    #[test]
    fn accepts_good_and_rejects_each_fault_with_real_codes() {
        let now = signer::timestamp_now();
        let mut n = NonceCache::default();
        let code = |r: Result<&Account, ApiFailure>| {
            r.map(|_| "OK".to_string()).unwrap_or_else(|e| e.code)
        };
        assert_eq!(
            code(verify(
                "GET",
                &signed("sk", "n1", &now),
                &accounts(),
                900,
                &mut n
            )),
            "OK"
        );
        assert_eq!(
            code(verify(
                "GET",
                &signed("sk", "n1", &now),
                &accounts(),
                900,
                &mut n
            )),
            "SignatureNonceUsed"
        );
        assert_eq!(
            code(verify(
                "POST",
                &signed("sk", "n2", &now),
                &accounts(),
                900,
                &mut n
            )),
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            code(verify(
                "GET",
                &signed("bad", "n3", &now),
                &accounts(),
                900,
                &mut n
            )),
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            code(verify(
                "GET",
                &signed("sk", "n4", "2016-02-23T12:46:24Z"),
                &accounts(),
                900,
                &mut n
            )),
            "InvalidTimeStamp.Expired"
        );
        let mut p = signed("sk", "n5", &now);
        p.insert("AccessKeyId".into(), "other".into());
        assert_eq!(
            code(verify("GET", &p, &accounts(), 900, &mut n)),
            "InvalidAccessKeyId.NotFound"
        );
        let mut p = signed("sk", "n6", &now);
        p.remove("Signature");
        assert_eq!(
            code(verify("GET", &p, &accounts(), 900, &mut n)),
            "MissingParameter"
        );
    }

    #[test]
    fn mismatch_message_carries_server_string_to_sign() {
        let now = signer::timestamp_now();
        let p = signed("wrong", "n", &now);
        let e = verify("GET", &p, &accounts(), 900, &mut NonceCache::default()).unwrap_err();
        assert_eq!(e.status, 400);
        let sts = signer::string_to_sign("GET", &p);
        assert!(
            e.message
                .ends_with(&format!("server string to sign is:{sts}")),
            "{}",
            e.message
        );
    }
}
