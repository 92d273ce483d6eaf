//! The emulated STS's mutable state: its configuration (faults change at run time), the
//! identities it authenticates, the nonces it has seen and a request log.
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::config::{StsConfig, StsFaults};
use crate::ecs::nonce::NonceCache;
use crate::ecs::config::Account;
use crate::ecs::{ApiFailure, Sessions};

/// One answered request (no secret: the AccessKeyId only).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StsLogEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The `Action` parameter.
    pub action: String,
    /// The signer's AccessKeyId (empty for AssumeRoleWithOIDC).
    pub access_key_id: String,
    /// Error code; empty on success.
    pub code: String,
}

pub(crate) struct StsState {
    config: Mutex<StsConfig>,
    /// The cloud's configured AccessKeys (the ECS emulator's accounts).
    pub(crate) accounts: Vec<Account>,
    /// Shared with the ECS emulator, which honours what is issued here.
    pub(crate) sessions: Arc<Sessions>,
    nonces: Mutex<NonceCache>,
    log: Mutex<Vec<StsLogEntry>>,
}

impl StsState {
    pub(crate) fn new(config: StsConfig, accounts: Vec<Account>, sessions: Arc<Sessions>) -> Self {
        Self {
            config: Mutex::new(config),
            accounts,
            sessions,
            nonces: Mutex::new(NonceCache::default()),
            log: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn config(&self) -> StsConfig {
        self.config.lock().expect("STS config lock").clone()
    }

    pub(crate) fn set_faults(&self, faults: StsFaults) -> anyhow::Result<()> {
        faults.validate()?;
        self.config.lock().expect("STS config lock").faults = faults;
        Ok(())
    }

    pub(crate) fn nonces(&self) -> MutexGuard<'_, NonceCache> {
        self.nonces.lock().expect("STS nonce lock")
    }

    /// The injected `Throttling`, if this request draws it.
    pub(crate) fn throttle(&self, action: &str) -> Result<(), ApiFailure> {
        let mut config = self.config.lock().expect("STS config lock");
        let f = &mut config.faults;
        let applies =
            f.throttle_actions.is_empty() || f.throttle_actions.iter().any(|a| a == action);
        let counted = applies && f.throttle_next > 0;
        if counted {
            f.throttle_next -= 1;
        }
        if counted
            || (applies
                && f.throttle_probability > 0.0
                && rand::random::<f64>() < f.throttle_probability)
        {
            return Err(ApiFailure::new(
                400,
                "Throttling",
                "Request was denied due to request throttling.",
            ));
        }
        Ok(())
    }

    pub(crate) fn record(&self, action: &str, access_key_id: &str, code: &str) {
        let mut log = self.log.lock().expect("STS log lock");
        let seq = log.len() as u64 + 1;
        if log.len() >= 10_000 {
            log.remove(0);
        }
        log.push(StsLogEntry {
            seq,
            action: action.into(),
            access_key_id: access_key_id.into(),
            code: code.into(),
        });
    }

    pub(crate) fn log(&self) -> Vec<StsLogEntry> {
        self.log.lock().expect("STS log lock").clone()
    }
}
