//! `ecs-provisioner`: the command line.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use ecs_provisioner::app;
use ecs_provisioner::config::LogFormat;
use ecs_provisioner::policy::PolicyCommand;

/// Elastic Jenkins agents on Alibaba Cloud ECS, placed and scaled by WebAssembly policies.
#[derive(Parser)]
#[command(name = "ecs-provisioner", version = ecs_provisioner::version::VERSION.as_str(), about)]
struct Cli {
    /// Log format: human or json (overrides the config file's `log-format`).
    #[arg(long, global = true, value_parser = ["human", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the provisioner: reconcile Jenkins demand with the ECS fleet until stopped (SIGTERM).
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "ecs-provisioner.toml")]
        config: PathBuf,
        /// Shadow mode: a candidate policy (a .wasm file or builtin:default) judged every cycle
        /// on the same snapshot, without acting. Overrides `[policy] shadow`, also on reload.
        #[arg(long, value_name = "POLICY")]
        shadow_policy: Option<String>,
    },
    /// Observe and decide once, act on nothing: print what would be launched and removed, and why.
    Plan {
        /// Configuration file.
        #[arg(short, long, default_value = "ecs-provisioner.toml")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration, the policy, credentials, cloud resources, Jenkins and the SSH key.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "ecs-provisioner.toml")]
        config: PathBuf,
    },
    /// Run the whole system on the embedded emulators with a synthetic workload.
    Demo(app::demo::DemoArgs),
    /// Serve the ECS, instance SSH and Jenkins emulators alone.
    Sim(app::sim::SimArgs),
    /// An emulated inbound Jenkins agent (same flags as `java -jar agent.jar`).
    #[command(name = "sim-agent", disable_help_flag = true)]
    SimAgent {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Test, benchmark, scaffold, build and replay policies.
    #[command(subcommand)]
    Policy(PolicyCli),
    /// Print shell completions for this command (the Debian package installs them).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print this command's man page (roff; the Debian package installs it).
    Manpage,
}

/// `policy ...`: the policy crate's commands, and the replay, which needs the engine.
#[derive(Subcommand)]
enum PolicyCli {
    #[command(flatten)]
    Core(PolicyCommand),
    /// Replay a trace through the engine with one or more policies, in virtual time, and
    /// compare queue waits, node-hours, cost and launches side by side.
    Replay(app::replay::ReplayArgs),
    /// Make traces for `policy replay`.
    #[command(subcommand)]
    Trace(app::replay::TraceCommand),
}

/// The exit code of a command, printing its error once.
fn report_error(result: anyhow::Result<i32>) -> i32 {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        1
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format.as_deref().map(|f| if f == "json" { LogFormat::Json } else { LogFormat::Human });
    // `run` sets up logging itself, once it has read the config's `log-format`. The other
    // commands are quiet by default; RUST_LOG overrides.
    match cli.command {
        Command::Run { .. } => app::tune_allocator(),
        Command::Sim(_) => app::init_logging(format.unwrap_or_default(), "info"),
        _ => app::init_logging(format.unwrap_or_default(), "warn"),
    }
    let code = match cli.command {
        Command::Policy(PolicyCli::Core(cmd)) => cmd.run(),
        Command::Policy(PolicyCli::Replay(args)) => report_error(app::replay::replay_command(&args)),
        Command::Policy(PolicyCli::Trace(cmd)) => report_error(app::replay::trace_command(&cmd)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ecs-provisioner", &mut std::io::stdout());
            0
        }
        Command::Manpage => match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: cannot write the man page: {e}");
                1
            }
        },
        other => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async move {
                let result = match other {
                    Command::Run { config, shadow_policy } => {
                        app::run(&config, format, &app::Overrides { shadow_policy }).await
                    }
                    Command::Plan { config, json } => app::plan(&config, json).await,
                    Command::Check { config } => app::check(&config).await,
                    Command::Demo(args) if args.ha => app::demo_ha::run(&args).await,
                    Command::Demo(args) => app::demo::run(args).await,
                    Command::Sim(args) => app::sim::run(args).await,
                    Command::SimAgent { args } => app::sim_agent(args).await,
                    Command::Policy(_) | Command::Completions { .. } | Command::Manpage => unreachable!("handled above"),
                };
                match result {
                    Ok(code) => code,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        1
                    }
                }
            })
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
