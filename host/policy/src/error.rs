//! The one error type every policy failure maps to.
//!
//! A policy is untrusted code: whatever it does (trap, spin, allocate without end, answer
//! nonsense), the host turns it into a [`PolicyError`] that names the policy, the exported
//! function that was running and the cause, so the engine can log, count and fall back.

use std::fmt;
use std::time::Duration;

/// The exported function of the policy contract that was running when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    /// `configure(settings)`.
    Configure,
    /// `scale(snapshot)`.
    Scale,
    /// `place(request, offerings, fleet)`.
    Place,
}

impl Function {
    /// The function's name in the WIT contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Configure => "configure",
            Function::Scale => "scale",
            Function::Place => "place",
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a policy could not be loaded or evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// The file could not be read, is not a valid component, or could not be linked.
    Load(String),
    /// The component exports the contract in a version this host does not accept (or not at all).
    IncompatibleContract {
        /// What the component exports, e.g. `ecs-provisioner:policy@0.2.0`, or a description
        /// such as `no ecs-provisioner:policy/policy export` when the export is missing.
        found: String,
        /// The versions this host accepts, e.g. `0.1.x`.
        accepted: String,
    },
    /// No instance could be created (e.g. the instance pool is exhausted).
    Instantiate(String),
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, stack overflow...).
    Trap(String),
    /// The call ran past its wall-clock backstop (the epoch deadline).
    Timeout(Duration),
    /// The call used up its CPU budget: this much fuel.
    OutOfFuel(u64),
    /// The guest handed the host more than this many bytes at once (a huge answer, `Err`
    /// text or log line); nothing of it was copied.
    AnswerTooLarge(usize),
    /// The evaluation did not return within the watchdog's deadline and was abandoned.
    Unresponsive(Duration),
    /// The guest tried to grow its memory past the cap.
    MemoryCap {
        /// The cap in bytes.
        cap: u64,
        /// The size in bytes the guest asked to grow to.
        requested: u64,
    },
    /// The guest returned `Err(message)`.
    Rejected(String),
    /// The guest returned a value that breaks the contract (see [`crate::validate`]).
    InvalidOutput(String),
}

/// A policy failure: which policy, which function (if a call was running) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyError {
    /// The policy's name (`builtin:default` or the file stem of its `.wasm`).
    pub policy: String,
    /// The function that was running; `None` while loading or instantiating.
    pub function: Option<Function>,
    /// What went wrong.
    pub cause: Cause,
}

impl PolicyError {
    pub(crate) fn new(policy: impl Into<String>, function: Option<Function>, cause: Cause) -> Self {
        PolicyError {
            policy: policy.into(),
            function,
            cause,
        }
    }

    pub(crate) fn load(policy: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self::new(policy, None, Cause::Load(reason.to_string()))
    }

    /// A short machine-friendly name of the cause, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self.cause {
            Cause::Load(_) => "load",
            Cause::IncompatibleContract { .. } => "incompatible-contract",
            Cause::Instantiate(_) => "instantiate",
            Cause::Trap(_) => "trap",
            Cause::Timeout(_) => "timeout",
            Cause::OutOfFuel(_) => "out-of-fuel",
            Cause::AnswerTooLarge(_) => "answer-too-large",
            Cause::Unresponsive(_) => "unresponsive",
            Cause::MemoryCap { .. } => "memory-cap",
            Cause::Rejected(_) => "rejected",
            Cause::InvalidOutput(_) => "invalid-output",
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.policy;
        if let Cause::IncompatibleContract { found, accepted } = &self.cause {
            return write!(
                f,
                "policy `{p}` was built for contract {found}; this host accepts {accepted}"
            );
        }
        match self.function {
            Some(func) => write!(f, "policy `{p}`: {func}: ")?,
            None => write!(f, "policy `{p}`: ")?,
        }
        match &self.cause {
            Cause::Load(r) => write!(f, "cannot load: {r}"),
            Cause::IncompatibleContract { .. } => unreachable!("handled above"),
            Cause::Instantiate(r) => write!(f, "cannot instantiate: {r}"),
            Cause::Trap(m) => write!(f, "trapped: {m}"),
            Cause::Timeout(d) => write!(
                f,
                "ran past its wall-clock time budget of {} ms (epoch deadline)",
                d.as_millis()
            ),
            Cause::OutOfFuel(fuel) => write!(
                f,
                "used up its CPU budget of {fuel} fuel (see `policy bench` for what a call uses)"
            ),
            Cause::AnswerTooLarge(max) => write!(
                f,
                "handed the host more than {} at once; nothing of it was kept",
                size(*max as u64)
            ),
            Cause::Unresponsive(d) => write!(
                f,
                "did not return within {} ms and was abandoned (watchdog)",
                d.as_millis()
            ),
            Cause::MemoryCap { cap, requested } => write!(
                f,
                "exceeded the memory cap of {} (tried to grow to {})",
                mib(*cap),
                mib(*requested)
            ),
            Cause::Rejected(m) => write!(f, "returned an error: {m}"),
            Cause::InvalidOutput(m) => write!(f, "returned invalid output: {m}"),
        }
    }
}

impl std::error::Error for PolicyError {}

fn size(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes.div_ceil(1024))
    } else {
        mib(bytes)
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!(
            "{:.1} MiB ({bytes} bytes)",
            bytes as f64 / (1u64 << 20) as f64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_policy_function_and_cause() {
        let e = PolicyError::new(
            "x",
            Some(Function::Scale),
            Cause::Timeout(Duration::from_millis(200)),
        );
        assert_eq!(
            e.to_string(),
            "policy `x`: scale: ran past its wall-clock time budget of 200 ms (epoch deadline)"
        );
        let e = PolicyError::new(
            "x",
            None,
            Cause::IncompatibleContract {
                found: "ecs-provisioner:policy@0.3.0".into(),
                accepted: "0.2.x, 0.1.x".into(),
            },
        );
        assert_eq!(
            e.to_string(),
            "policy `x` was built for contract ecs-provisioner:policy@0.3.0; this host accepts 0.2.x, 0.1.x"
        );
        let e = PolicyError::new(
            "x",
            Some(Function::Place),
            Cause::MemoryCap {
                cap: 64 << 20,
                requested: 65 << 20,
            },
        );
        assert_eq!(
            e.to_string(),
            "policy `x`: place: exceeded the memory cap of 64 MiB (tried to grow to 65 MiB)"
        );
        assert_eq!(e.kind(), "memory-cap");
        let e = PolicyError::new("x", Some(Function::Scale), Cause::AnswerTooLarge(1 << 20));
        assert_eq!(
            e.to_string(),
            "policy `x`: scale: handed the host more than 1 MiB at once; nothing of it was kept"
        );
        let e = PolicyError::new("x", Some(Function::Place), Cause::OutOfFuel(5_000));
        assert_eq!(
            e.to_string(),
            "policy `x`: place: used up its CPU budget of 5000 fuel (see `policy bench` for what a call uses)"
        );
    }
}
