//! The provisioner as the end-to-end tests run it in child processes.
//!
//! Three subcommands, each calling exactly the library function the real `ecs-provisioner`
//! binary calls for it: `run --config FILE [--shadow-policy POLICY]` (the daemon, `app::run`), `check --config FILE`
//! (`app::check`) and `sim-agent ...` (the emulated inbound agent, `app::sim_agent`). It lives in the `e2e` package so that cargo
//! builds it before this package's integration tests and hands them its path as
//! `CARGO_BIN_EXE_e2e-provisioner` — always present and never stale, unlike a path guessed
//! under the target directory (`CARGO_BIN_EXE_ecs-provisioner` exists only inside the
//! `ecs-provisioner` package). An integration test cannot use its own executable for agents:
//! that is the libtest harness, which knows no `sim-agent`.

use std::path::PathBuf;
use std::process::ExitCode;

use ecs_provisioner::app;
use ecs_provisioner::config::LogFormat;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match args.first().map(String::as_str) {
            Some("run") if args.len() == 3 && (args[1] == "--config" || args[1] == "-c") => {
                app::run(&PathBuf::from(&args[2]), None, &app::Overrides::default()).await
            }
            Some("run") if args.len() == 5 && (args[1] == "--config" || args[1] == "-c") && args[3] == "--shadow-policy" => {
                app::run(&PathBuf::from(&args[2]), None, &app::Overrides { shadow_policy: Some(args[4].clone()) }).await
            }
            Some("check") if args.len() == 3 && (args[1] == "--config" || args[1] == "-c") => {
                app::check(&PathBuf::from(&args[2])).await
            }
            Some("sim-agent") => {
                app::init_logging(LogFormat::Human, "warn");
                app::sim_agent(args[1..].to_vec()).await
            }
            _ => Err(anyhow::anyhow!("usage: e2e-provisioner run --config FILE [--shadow-policy POLICY] | check --config FILE | sim-agent ARGS...")),
        }
    });
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code.clamp(1, 255) as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
