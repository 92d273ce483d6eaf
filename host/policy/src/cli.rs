//! `ecs-provisioner policy ...`: clap types and entry points for `test`, `bench`, `new` and
//! `build`.
//!
//! `main.rs` embeds [`PolicyCommand`] as a subcommand and calls [`PolicyCommand::run`],
//! which prints to stdout and returns the process exit code.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Limits, Policy, PolicyError, PolicyRuntime, PolicySource};

/// Work with policy modules.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PolicyCommand {
    /// Run fixture files (inputs + expected outcomes) against a compiled policy.
    Test(TestArgs),
    /// Measure compile, load, instantiation and evaluation time on a synthetic snapshot.
    Bench(BenchArgs),
    /// Create a new policy (Rust, Python or JavaScript) that builds and passes `policy test`.
    New(NewArgs),
    /// Build a policy's component with its language's toolchain and compile it for this host.
    Build(BuildArgs),
}

/// Sandbox limits and cache, shared by `test` and `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Memory cap per evaluation, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: u64,
    /// CPU budget per call, in wasmtime fuel (about one unit per wasm instruction; the
    /// default is about 200 ms of tight computation on a 2-core EPYC). Deterministic: a call
    /// that fits on an idle machine fits on a busy one.
    #[arg(long, default_value_t = super::DEFAULT_FUEL)]
    pub fuel: u64,
    /// Wall-clock backstop per call, in milliseconds (a call past it fails as a timeout).
    #[arg(long, default_value_t = super::DEFAULT_DEADLINE.as_millis() as u64)]
    pub deadline_ms: u64,
    /// Do not read or write the compiled-policy cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Where compiled policies are cached (default: ~/.cache/ecs-provisioner/policies).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// KiB of each pooled memory kept resident between evaluations (tuning; see `Limits`).
    #[arg(long, hide = true, default_value_t = (Limits::default().keep_resident_bytes >> 10) as u64)]
    pub keep_resident_kib: u64,
}

impl RuntimeArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_mib << 20,
            fuel: self.fuel,
            deadline: Duration::from_millis(self.deadline_ms),
            keep_resident_bytes: (self.keep_resident_kib << 10) as usize,
            ..Limits::default()
        }
    }

    /// A runtime with these limits and cache settings.
    pub fn runtime(&self) -> Result<Arc<PolicyRuntime>, PolicyError> {
        let mut rt = PolicyRuntime::new(self.limits())?;
        if !self.no_cache
            && let Some(dir) = self
                .cache_dir
                .clone()
                .or_else(PolicyRuntime::default_cache_dir)
        {
            rt = rt.with_cache_dir(dir);
        }
        Ok(Arc::new(rt))
    }
}

/// `policy test <policy> <fixtures...>`
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// `builtin:default` or a path to a `.wasm` component.
    pub policy: String,
    /// Fixture files (.toml or .json) or directories of them.
    #[arg(required = true)]
    pub fixtures: Vec<PathBuf>,
    /// Sandbox limits and cache settings.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `policy bench <policy> [--nodes N --queued M --offerings K]`
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// `builtin:default` or a path to a `.wasm` component.
    pub policy: String,
    /// Nodes in the synthetic snapshot.
    #[arg(long, default_value_t = 1000)]
    pub nodes: u32,
    /// Queued builds in the synthetic snapshot.
    #[arg(long, default_value_t = 5000)]
    pub queued: u32,
    /// Offerings in the synthetic snapshot.
    #[arg(long, default_value_t = 200)]
    pub offerings: u32,
    /// Timed evaluations per measurement.
    #[arg(long, default_value_t = 2000)]
    pub iterations: u32,
    /// The policy's settings (JSON).
    #[arg(long, default_value = "{}")]
    pub settings: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Sandbox limits and cache settings.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `policy new <name> [--lang rust|python|javascript] [--dir DIR]`
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// Policy name, e.g. `my-policy` (lowercase letters, digits and dashes).
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: super::lang::Language,
    /// Directory to create the policy in (it goes to DIR/NAME).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Path to the SDK: the `ecs-policy-sdk` crate (Rust), `guest-sdk/python` or
    /// `guest-sdk/js`. Found automatically inside an ecs-provisioner checkout; otherwise a
    /// Rust crate depends on the published version and Python and JavaScript need it.
    #[arg(long)]
    pub sdk_path: Option<PathBuf>,
}

/// `policy build [DIR]`
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The policy's directory (a cargo crate, or a directory with `policy.toml`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Sandbox limits and cache settings (the compiled component is cached for `run`).
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl PolicyCommand {
    /// Runs the command, printing to stdout; returns the exit code.
    pub fn run(&self) -> i32 {
        let mut out = std::io::stdout().lock();
        match self {
            PolicyCommand::Test(a) => test(a, &mut out),
            PolicyCommand::Bench(a) => bench(a, &mut out),
            PolicyCommand::New(a) => new(a, &mut out),
            PolicyCommand::Build(a) => build(a, &mut out),
        }
    }
}

/// `policy test`: 0 when every case passed, 1 when any failed, 2 when the policy did not load.
pub fn test(args: &TestArgs, out: &mut dyn Write) -> i32 {
    // Not `load`: each case brings its own settings, and `{}` may not be valid ones.
    let prepared = args
        .runtime
        .runtime()
        .and_then(|rt| rt.prepare(&PolicySource::parse(&args.policy)));
    let policy = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return 2;
        }
    };
    match super::fixture::run(&policy, &args.fixtures, out) {
        Ok(s) if s.failed == 0 => 0,
        Ok(_) => 1,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            2
        }
    }
}

/// `policy bench`: prints the report; 0 on success, 2 when the policy failed.
pub fn bench(args: &BenchArgs, out: &mut dyn Write) -> i32 {
    let shape = super::bench::Shape {
        nodes: args.nodes,
        queued: args.queued,
        offerings: args.offerings,
    };
    match super::bench::run(
        &args.policy,
        &args.settings,
        shape,
        args.iterations,
        &args.runtime.limits(),
    ) {
        Ok(report) => {
            let text = if args.json {
                serde_json::to_string_pretty(&report).unwrap_or_default()
            } else {
                report.to_string()
            };
            let _ = writeln!(out, "{text}");
            0
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            2
        }
    }
}

/// `policy new`: 0 when the crate was written, 2 otherwise.
pub fn new(args: &NewArgs, out: &mut dyn Write) -> i32 {
    match super::scaffold_script::create(args.lang, &args.name, &args.dir, args.sdk_path.as_deref())
    {
        Ok(created) => {
            let _ = writeln!(out, "{created}");
            0
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            2
        }
    }
}

/// `policy build`: builds the component, then compiles it into the compiled-policy cache (unless
/// `--no-cache`), so the first `run` takes it from there. 0 when built, 2 otherwise.
pub fn build(args: &BuildArgs, out: &mut dyn Write) -> i32 {
    let built = match super::build::build(&args.dir, &super::build::Toolchains::from_env()) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return 2;
        }
    };
    let size = std::fs::metadata(&built.wasm).map_or(0, |m| m.len());
    let _ = writeln!(
        out,
        "built {} ({:.1} MB, {}) in {:.1} s",
        built.wasm.display(),
        size as f64 / 1e6,
        built.language.as_str(),
        built.took.as_secs_f64()
    );
    if args.runtime.no_cache {
        return 0;
    }
    let started = std::time::Instant::now();
    let warmed = args.runtime.runtime().and_then(|rt| {
        rt.prepare(&PolicySource::Path(built.wasm.clone()))
            .map(|_| rt.cache_dir().map(std::path::Path::to_path_buf))
    });
    match warmed {
        Ok(dir) => {
            let _ = writeln!(
                out,
                "compiled for this host in {:.1} s, cached in {} (`run` and `plan` start from there)",
                started.elapsed().as_secs_f64(),
                dir.map_or("nowhere: no cache directory".into(), |d| d
                    .display()
                    .to_string())
            );
            0
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            2
        }
    }
}

/// Loads `policy` (`builtin:default` or a path) with `settings` under `runtime`'s limits.
pub fn load(policy: &str, settings: &str, runtime: &RuntimeArgs) -> Result<Policy, PolicyError> {
    runtime
        .runtime()?
        .load(&PolicySource::parse(policy), settings)
}
