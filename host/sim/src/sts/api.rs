//! The STS actions: `AssumeRole` and `GetCallerIdentity` (signed, checked like ECS requests)
//! and `AssumeRoleWithOIDC` (anonymous: the OIDC token is the proof, as in the real API).
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::config::{RoleSpec, StsConfig};
use super::oidc_token;
use super::state::StsState;
use ecsp_ecs::signer::{self, Params};
use crate::ecs::ApiFailure;
use crate::ecs::auth;
use crate::ecs::config::Account;
use crate::ecs::sessions::{self, Session};

/// The API version this emulator serves.
pub const VERSION: &str = "2015-04-01";

fn param<'p>(params: &'p Params, name: &str) -> Result<&'p str, ApiFailure> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiFailure::new(
                400,
                format!("MissingParameter.{name}"),
                format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
            )
        })
}

/// Who signed a request.
enum Caller {
    Key(Account),
    Session(Session),
}

/// Runs one request; the JSON answer without `RequestId`.
pub(crate) fn dispatch(sts: &StsState, method: &str, params: &Params) -> Result<Value, ApiFailure> {
    let action = params.get("Action").cloned().unwrap_or_default();
    if !matches!(
        action.as_str(),
        "AssumeRole" | "AssumeRoleWithOIDC" | "GetCallerIdentity"
    ) {
        return Err(ApiFailure::new(
            404,
            "InvalidAction.NotFound",
            format!("Specified api is not found, please check your url and method: {action}"),
        ));
    }
    if params.get("Version").map(String::as_str) != Some(VERSION) {
        return Err(ApiFailure::new(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    }
    let caller = if action == "AssumeRoleWithOIDC" {
        None
    } else {
        Some(authenticate(sts, method, params)?)
    };
    sts.throttle(&action)?;
    let config = sts.config();
    match (action.as_str(), caller) {
        ("AssumeRole", Some(caller)) => assume_role(sts, &config, params, &caller),
        ("GetCallerIdentity", Some(caller)) => Ok(caller_identity(&config, &caller)),
        _ => assume_role_with_oidc(sts, &config, params),
    }
}

fn authenticate(sts: &StsState, method: &str, params: &Params) -> Result<Caller, ApiFailure> {
    let key_id = params
        .get("AccessKeyId")
        .map(String::as_str)
        .unwrap_or_default();
    let session = sts.sessions.get(key_id);
    let one = session.as_ref().map(|s| [s.account.clone()]);
    let accounts = match &one {
        Some(one) => one.as_slice(),
        None => sts.accounts.as_slice(),
    };
    let account = {
        let mut nonces = sts.nonces();
        auth::verify(
            method,
            params,
            accounts,
            sts.config().timestamp_tolerance_secs,
            &mut nonces,
        )?
        .clone()
    };
    Ok(match session {
        Some(s) => {
            sessions::check_not_expired(&s)?;
            Caller::Session(s)
        }
        None => Caller::Key(account),
    })
}

/// `acs:ram::<account>:<kind>/<name>` → the name, when account and kind match.
fn arn_name<'a>(arn: &'a str, account: &str, kind: &str) -> Option<&'a str> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (acct, res) = rest.split_once(':')?;
    let name = res.strip_prefix(kind)?.strip_prefix('/')?;
    (acct == account && !name.is_empty()).then_some(name)
}

fn role<'c>(config: &'c StsConfig, arn: &str) -> Result<&'c RoleSpec, ApiFailure> {
    let well_formed = arn.starts_with("acs:ram::") && arn.contains(":role/");
    if !well_formed {
        return Err(ApiFailure::new(
            400,
            "InvalidParameter.RoleArn",
            "The parameter RoleArn is wrongly formed.",
        ));
    }
    arn_name(arn, &config.account_id, "role")
        .and_then(|name| {
            config
                .roles
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "EntityNotExist.Role",
                format!("The role not exists: {arn}."),
            )
        })
}

fn no_permission() -> ApiFailure {
    ApiFailure::new(
        403,
        "NoPermission",
        "You are not authorized to do this action. You should be authorized by RAM.",
    )
}

/// Session name, duration and policy, checked as STS checks them.
fn session_request(params: &Params, role: &RoleSpec) -> Result<(String, u64), ApiFailure> {
    let name = param(params, "RoleSessionName")?;
    let name_ok = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".@-_".contains(c));
    if !name_ok {
        return Err(ApiFailure::new(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        ));
    }
    let duration = match params.get("DurationSeconds") {
        None => 3600,
        Some(d) => d.parse::<u64>().map_err(|_| {
            ApiFailure::new(
                400,
                "InvalidParameter.DurationSeconds",
                "The parameter DurationSeconds is wrongly formed.",
            )
        })?,
    };
    if duration < 900 || duration > role.max_session_secs {
        return Err(ApiFailure::new(
            400,
            "InvalidParameter.DurationSeconds",
            format!(
                "The Min/Max value of DurationSeconds is 15min/{}min.",
                role.max_session_secs / 60
            ),
        ));
    }
    if let Some(policy) = params.get("Policy")
        && serde_json::from_str::<Value>(policy).is_err()
    {
        return Err(ApiFailure::new(
            400,
            "InvalidParameter.PolicyGrammar",
            "The parameter Policy has not passed grammar check.",
        ));
    }
    Ok((name.to_string(), duration))
}

fn role_id(config: &StsConfig, role: &str) -> String {
    // Stable per account and role, digits like the real ones.
    let h = role
        .bytes()
        .chain(config.account_id.bytes())
        .fold(1469598103934665603u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(1099511628211)
        });
    format!("3{:017}", h % 100_000_000_000_000_000)
}

fn issue(
    sts: &StsState,
    config: &StsConfig,
    role: &RoleSpec,
    session_name: &str,
    duration: u64,
) -> Value {
    let lifetime = config.session_lifetime_secs.unwrap_or(duration);
    // The wire format has whole seconds: the session ends exactly when the answer says.
    let expiration = signer::format_timestamp(
        OffsetDateTime::now_utc() + time::Duration::seconds(lifetime as i64),
    );
    let expires_at = signer::parse_timestamp(&expiration).expect("formatted just now");
    let id = || uuid::Uuid::new_v4().simple().to_string();
    let account = Account {
        access_key_id: format!("STS.NU{}", &id()[..22].to_uppercase()),
        access_key_secret: id() + &id()[..12],
        security_token: Some(format!("CAIS{}{}{}", id(), id(), id())),
        denied_actions: role.denied_actions.clone(),
        ram_policy: None,
    };
    let role_id = role_id(config, &role.name);
    sts.sessions.issue(Session {
        account: account.clone(),
        expires_at,
        arn: format!(
            "acs:ram::{}:assumed-role/{}/{session_name}",
            config.account_id, role.name
        ),
        principal_id: format!("{role_id}:{session_name}"),
    });
    json!({
        "AssumedRoleUser": {
            "Arn": format!("{}/{session_name}", config.role_arn(&role.name)),
            "AssumedRoleId": format!("{role_id}:{session_name}"),
        },
        "Credentials": {
            "AccessKeyId": account.access_key_id,
            "AccessKeySecret": account.access_key_secret,
            "SecurityToken": account.security_token,
            "Expiration": expiration,
        }
    })
}

fn assume_role(
    sts: &StsState,
    config: &StsConfig,
    params: &Params,
    caller: &Caller,
) -> Result<Value, ApiFailure> {
    let role = role(config, param(params, "RoleArn")?)?;
    let (session_name, duration) = session_request(params, role)?;
    let trusted = match caller {
        Caller::Key(a) => role
            .trusted_keys
            .iter()
            .any(|k| k == "*" || *k == a.access_key_id),
        Caller::Session(s) => {
            role.trusted_keys.iter().any(|k| k == "*")
                || role
                    .trusted_roles
                    .iter()
                    .any(|r| s.arn.contains(&format!(":assumed-role/{r}/")))
        }
    };
    let external_ok = role
        .external_id
        .as_deref()
        .is_none_or(|want| params.get("ExternalId").map(String::as_str) == Some(want));
    if !trusted || !external_ok || config.faults.no_permission_roles.contains(&role.name) {
        return Err(no_permission());
    }
    Ok(issue(sts, config, role, &session_name, duration))
}

fn assume_role_with_oidc(
    sts: &StsState,
    config: &StsConfig,
    params: &Params,
) -> Result<Value, ApiFailure> {
    let provider_arn = param(params, "OIDCProviderArn")?;
    let provider = arn_name(provider_arn, &config.account_id, "oidc-provider")
        .and_then(|name| config.oidc_providers.iter().find(|p| p.name == name))
        .ok_or_else(|| {
            ApiFailure::new(
                404,
                "EntityNotExist.OIDCProvider",
                format!("The OIDC provider does not exist: {provider_arn}."),
            )
        })?;
    let role = role(config, param(params, "RoleArn")?)?;
    let token = param(params, "OIDCToken")?;
    let (session_name, duration) = session_request(params, role)?;
    let claims = oidc_token::claims(token).ok_or_else(|| {
        ApiFailure::new(
            400,
            "InvalidParameter.OIDCToken",
            "The parameter OIDCToken is invalid.",
        )
    })?;
    if config.faults.oidc_token_expired || claims.exp <= OffsetDateTime::now_utc().unix_timestamp()
    {
        return Err(ApiFailure::new(
            400,
            "AuthenticationFail.OIDCToken.Expired",
            "The OIDC token has expired.",
        ));
    }
    let audience_ok = provider.client_ids.is_empty() || provider.client_ids.contains(&claims.aud);
    if claims.iss != provider.issuer || !audience_ok {
        return Err(ApiFailure::new(
            400,
            "AuthenticationFail.OIDCToken.Invalid",
            "The issuer or audience of the OIDC token does not match the OIDC provider.",
        ));
    }
    if !role.trusted_oidc_providers.contains(&provider.name)
        || config.faults.no_permission_roles.contains(&role.name)
    {
        return Err(no_permission());
    }
    let mut answer = issue(sts, config, role, &session_name, duration);
    answer["OIDCTokenInfo"] = json!({
        "Subject": claims.sub,
        "Issuer": claims.iss,
        "ClientIds": claims.aud,
    });
    Ok(answer)
}

fn caller_identity(config: &StsConfig, caller: &Caller) -> Value {
    match caller {
        Caller::Key(a) => json!({
            "IdentityType": "Account",
            "AccountId": config.account_id,
            "Arn": format!("acs:ram::{}:root", config.account_id),
            "PrincipalId": config.account_id,
            "UserId": config.account_id,
            "AccessKeyId": a.access_key_id,
        }),
        Caller::Session(s) => json!({
            "IdentityType": "AssumedRoleUser",
            "AccountId": config.account_id,
            "Arn": s.arn,
            "PrincipalId": s.principal_id,
            "RoleId": s.principal_id.split(':').next().unwrap_or_default(),
        }),
    }
}
