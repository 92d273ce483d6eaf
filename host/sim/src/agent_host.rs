//! In-process agents, for the engine benchmark only.
//!
//! An emulated agent is a `sim-agent` process of about 3 MiB; 10,000 of them do not fit on a
//! benchmark machine. In this mode the emulators host the agents themselves: the SSH emulator
//! sets [`HANDOFF_ENV`] on the commands it runs, and a `sim-agent` started with it hands its
//! arguments to the emulator over that Unix socket (checked as the WebSocket handshake checks
//! them, the agent.jar compared with the controller's), then becomes `sleep` holding the socket
//! open. The Jenkins node stays connected while that process lives: the bootstrap's pid checks,
//! a kill of the instance's processes and the deletion of the instance behave as with real
//! agents. What changes is the agent side only: no WebSocket, no per-agent runtime.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::agent::{AgentArgs, AgentError};
use super::jenkins::JenkinsSim;

/// Environment variable naming the hand-off socket on the commands the SSH emulator runs.
pub const HANDOFF_ENV: &str = "ECSP_SIM_AGENT_HANDOFF";

/// What a `sim-agent` hands over: one JSON line.
#[derive(serde::Serialize, serde::Deserialize)]
struct Handoff {
    name: String,
    secret: String,
    /// Absolute path of the agent.jar the process would run.
    jar: PathBuf,
}

/// Accepts hand-offs on `socket` until the task is aborted; each agent stays connected to
/// `jenkins` while its process keeps the connection open.
pub fn serve(socket: &Path, jenkins: &JenkinsSim) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)?;
    let jenkins = jenkins.handle();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let jenkins = jenkins.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = tokio::io::BufReader::new(read);
                let mut line = String::new();
                if read.read_line(&mut line).await.is_err() {
                    return;
                }
                let agent = serde_json::from_str::<Handoff>(&line)
                    .map_err(|e| format!("bad hand-off: {e}"))
                    .and_then(|h| {
                        let jar = std::fs::read(&h.jar)
                            .map_err(|e| format!("no agent.jar at {}: {e} (it is delivered by the provisioner)", h.jar.display()))?;
                        if *jar != *jenkins.agent_jar() {
                            return Err(format!("{} is not the agent.jar the controller serves", h.jar.display()));
                        }
                        jenkins.connect_in_process(&h.name, &h.secret)
                    });
                match agent {
                    Ok(agent) => {
                        if write.write_all(b"ok\n").await.is_err() {
                            return;
                        }
                        // Online until the process holding the socket ends.
                        agent
                            .hold(async move {
                                let mut buf = [0u8; 64];
                                while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
                            })
                            .await;
                    }
                    Err(e) => {
                        let _ = write.write_all(format!("error {e}\n").as_bytes()).await;
                    }
                }
            });
        }
    }))
}

/// The `sim-agent` side: hands `args` to the emulator at `socket`, then replaces this process
/// with `sleep` holding the connection (returns only on failure).
pub fn hand_off(socket: &Path, args: &AgentArgs) -> Result<std::convert::Infallible, AgentError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fail = |reason: String| AgentError::Connect { url: socket.display().to_string(), reason };
    let jar = std::path::absolute(args.jar_path()).map_err(|e| fail(e.to_string()))?;
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| fail(e.to_string()))?;
    let line = serde_json::to_string(&Handoff { name: args.name.clone(), secret: args.secret.clone(), jar })
        .map_err(|e| fail(e.to_string()))?;
    stream.write_all(format!("{line}\n").as_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(|e| fail(e.to_string()))?;
    if answer.trim() != "ok" {
        let reason = answer.trim().strip_prefix("error ").unwrap_or(answer.trim()).to_owned();
        return Err(if reason.contains("agent.jar") { AgentError::AgentJar(reason) } else { fail(reason) });
    }
    // The socket survives the exec (no close-on-exec): `sleep` holds it until it is killed.
    let fd = stream.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns; no memory is involved.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let err = std::process::Command::new("sleep").arg("infinity").exec();
    Err(fail(format!("cannot exec sleep: {err}")))
}
