//! A stand-in for `java -jar agent.jar` in WebSocket mode, for emulated instances.
//!
//! Accepts agent.jar's own flags (`-url`, `-name`, `-secret @file`, `-webSocket`, `-workDir`,
//! `-internalDir`, `-noReconnect`, `-webSocketHeader N=V`; `--flag` spellings too), so one agent
//! command template serves both. Like agent.jar it polls `<url>login`, then opens
//! `ws(s)://…/wsagents/` with `Node-Name`, `Secret-Key` and `X-Remoting-Capability`, stays
//! connected (answering pings), reconnects with backoff when dropped, and exits cleanly on
//! SIGTERM or Ctrl-C.
//!
//! It also plays the `java` that runs agent.jar: `sim-agent [JVM options] -jar PATH ARGS...`
//! ignores the JVM options, and `sim-agent -version` prints a JRE banner. Before it connects it
//! compares the jar it was started from (`-jar PATH`, else `agent.jar` in `-workDir` or the
//! current directory) with the one the controller serves at `<url>jnlpJars/agent.jar`, and
//! refuses to start unless they are byte for byte the same: on emulated instances an agent runs
//! only if the provisioner delivered the controller's jar.

use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

/// Parsed agent command line.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentArgs {
    /// Jenkins root URL (a trailing `/` is added if missing).
    pub url: String,
    /// Node name (`-name`).
    pub name: String,
    /// The secret itself (already read from `@file`).
    pub secret: String,
    /// Connect over WebSocket (`-webSocket`).
    pub web_socket: bool,
    /// Work directory (`-workDir`).
    pub work_dir: Option<PathBuf>,
    /// Name of the internal directory under the work directory (`-internalDir`; default `remoting`).
    pub internal_dir: String,
    /// Stop instead of reconnecting when the connection drops (`-noReconnect`).
    pub no_reconnect: bool,
    /// Extra handshake headers (`-webSocketHeader NAME=VALUE`).
    pub extra_headers: Vec<(String, String)>,
    /// The jar named by `-jar` (the `java -jar agent.jar` form).
    pub jar: Option<PathBuf>,
}

/// What `sim-agent -version` prints (on stderr, as `java -version` does).
pub const JAVA_VERSION_BANNER: &str = "openjdk version \"17.0.13\" 2024-10-15\n\
     OpenJDK Runtime Environment (ecs-provisioner emulated JRE: runs agent.jar only)\n";

/// Whether the arguments ask for the version (`java -version`).
pub fn is_version_query(args: &[String]) -> bool {
    matches!(
        args.first().map(String::as_str),
        Some("-version" | "--version")
    )
}

/// Whether the arguments ask for help (`-help`, `--help`, `-h`), before or after `-jar PATH`.
pub fn is_help_query(args: &[String]) -> bool {
    args.iter().any(|a| matches!(a.as_str(), "-help" | "--help" | "-h"))
}

/// What `sim-agent --help` prints.
pub const USAGE: &str = "\
An emulated inbound Jenkins agent: the command line of `java -jar agent.jar`, speaking the
WebSocket agent protocol to Jenkins (the real one or the emulator).

Usage: ecs-provisioner sim-agent [JVM options] [-jar PATH] -url URL -name NAME -secret SECRET|@FILE -webSocket [options]

Options (agent.jar's spelling; `--kebab-case` is accepted too):
  -url URL                 the controller's root URL
  -name NAME               the node's name
  -secret SECRET|@FILE     the node's secret, or a file holding it
  -webSocket               connect over WebSocket (required: the TCP agent port is not emulated)
  -workDir DIR             the agent's work directory
  -internalDir NAME        the remoting directory under -workDir (default: remoting)
  -noReconnect             exit when the connection drops instead of reconnecting
  -webSocketHeader K=V     an extra header on the WebSocket handshake
  -version                 print the emulated `java -version` banner
  -help                    print this text
";

impl std::fmt::Debug for AgentArgs {
    // The secret is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentArgs")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

/// Why the agent could not run or connect.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The command line is wrong.
    #[error("agent arguments: {0}")]
    Usage(String),
    /// The `-secret @file` could not be read.
    #[error("cannot read the agent secret from {path}: {source}")]
    SecretFile {
        /// The secret file.
        path: String,
        /// The read error.
        source: std::io::Error,
    },
    /// The work directory could not be created.
    #[error("cannot create the agent work directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: String,
        /// The creation error.
        source: std::io::Error,
    },
    /// Jenkins answered the handshake with an HTTP error (400 unknown node, 403 bad secret...).
    #[error("Jenkins refused the agent connection with HTTP {status}: {body}")]
    Refused {
        /// The HTTP status Jenkins answered.
        status: u16,
        /// The body of that answer.
        body: String,
    },
    /// The connection to Jenkins failed.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL the agent dialled.
        url: String,
        /// Why the connection failed.
        reason: String,
    },
    /// The jar beside the agent is missing or not the controller's.
    #[error("refusing to start: {0}")]
    AgentJar(String),
}

impl AgentArgs {
    /// Parses agent.jar-style arguments (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, AgentError> {
        let usage = |m: String| AgentError::Usage(m);
        let mut args: Vec<String> = args.into_iter().collect();
        // `java [JVM options] -jar PATH ARGS`: what precedes -jar belongs to the JVM.
        let mut jar = None;
        if let Some(i) = args.iter().position(|a| a == "-jar") {
            if let Some(bad) = args[..i].iter().find(|a| !is_jvm_option(a)) {
                return Err(usage(format!("{bad:?} before -jar is not a JVM option")));
            }
            let path = args
                .get(i + 1)
                .ok_or_else(|| usage("-jar needs a path".into()))?;
            jar = Some(PathBuf::from(path));
            args.drain(..i + 2);
        }
        let mut it = args.into_iter();
        let (mut url, mut name, mut secret) = (None, None, None);
        let mut a = AgentArgs {
            url: String::new(),
            name: String::new(),
            secret: String::new(),
            web_socket: false,
            work_dir: None,
            internal_dir: "remoting".into(),
            no_reconnect: false,
            extra_headers: Vec::new(),
            jar,
        };
        while let Some(arg) = it.next() {
            let flag = arg.trim_start_matches('-');
            if flag.len() == arg.len() {
                return Err(usage(format!(
                    "unexpected argument {arg:?} (positional <secret> <name> is not supported; use -secret and -name)"
                )));
            }
            let mut value = |what: &str| {
                it.next()
                    .ok_or_else(|| usage(format!("{arg} needs a {what}")))
            };
            match flag {
                "url" => url = Some(value("URL")?),
                "name" => name = Some(value("node name")?),
                "secret" => secret = Some(value("secret or @file")?),
                "webSocket" | "websocket" | "web-socket" => a.web_socket = true,
                "workDir" | "work-dir" => a.work_dir = Some(PathBuf::from(value("directory")?)),
                "internalDir" | "internal-dir" => a.internal_dir = value("directory name")?,
                "noReconnect" | "no-reconnect" => a.no_reconnect = true,
                "webSocketHeader" => {
                    let v = value("NAME=VALUE")?;
                    let (k, v) = v.split_once('=').ok_or_else(|| {
                        usage(format!("-webSocketHeader wants NAME=VALUE, got {v:?}"))
                    })?;
                    a.extra_headers.push((k.to_string(), v.to_string()));
                }
                // Accepted for command-line compatibility; meaningless here.
                "failIfWorkDirIsMissing" | "noKeepAlive" => {}
                _ => return Err(usage(format!("unknown option {arg}"))),
            }
        }
        a.url = url.ok_or_else(|| usage("-url is required".into()))?;
        if !a.url.ends_with('/') {
            a.url.push('/');
        }
        a.name = name.ok_or_else(|| usage("-name is required".into()))?;
        let secret = secret.ok_or_else(|| usage("-secret is required".into()))?;
        a.secret = match secret.strip_prefix('@') {
            // "If any command-line argument is prepended with '@', it is read from that file."
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| AgentError::SecretFile {
                    path: path.to_string(),
                    source,
                })?
                .trim()
                .to_string(),
            None => secret,
        };
        if a.secret.is_empty() {
            return Err(usage("the secret is empty".into()));
        }
        if !a.web_socket {
            return Err(usage(
                "only -webSocket mode is supported (the TCP agent port is not emulated)".into(),
            ));
        }
        Ok(a)
    }

    /// The agent.jar this agent runs from: `-jar`, else `agent.jar` in the work directory, else
    /// in the current directory.
    pub fn jar_path(&self) -> PathBuf {
        match (&self.jar, &self.work_dir) {
            (Some(jar), _) => jar.clone(),
            (None, Some(dir)) => dir.join("agent.jar"),
            (None, None) => PathBuf::from("agent.jar"),
        }
    }

    fn ws_url(&self) -> String {
        let base = self
            .url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        format!("{base}wsagents/")
    }
}

/// `-Xmx512m`, `-Dkey=value`, `-XX:+UseG1GC`, `-server`...: options of the JVM itself.
fn is_jvm_option(arg: &str) -> bool {
    [
        "-X",
        "-D",
        "-ea",
        "-da",
        "-esa",
        "-dsa",
        "-server",
        "-client",
        "-verbose",
        "-javaagent:",
        "--add-opens",
        "--add-exports",
    ]
    .iter()
    .any(|p| arg.starts_with(p))
}

/// Compares the jar the agent runs from with the controller's. `Ok(false)`: the controller could
/// not be asked (try again); `Err`: missing or different (final).
async fn jar_matches_controller(args: &AgentArgs) -> Result<bool, AgentError> {
    use ecsp_jenkins::agent_jar::sha256_hex;
    let path = args.jar_path();
    let local = std::fs::read(&path).map_err(|e| {
        AgentError::AgentJar(format!(
            "no agent.jar at {}: {e} (it is delivered by the provisioner)",
            path.display()
        ))
    })?;
    let url = format!("{}jnlpJars/agent.jar", args.url);
    let served = match reqwest::get(&url).await {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot download the controller's agent.jar");
                return Ok(false);
            }
        },
        Ok(r) => {
            tracing::warn!(%url, status = %r.status(), "cannot download the controller's agent.jar");
            return Ok(false);
        }
        Err(e) => {
            tracing::warn!(%url, error = %e, "cannot download the controller's agent.jar");
            return Ok(false);
        }
    };
    let (mine, theirs) = (sha256_hex(&local), sha256_hex(&served));
    if mine != theirs {
        return Err(AgentError::AgentJar(format!(
            "{} (sha256 {mine}) is not the agent.jar the controller serves at {url} (sha256 {theirs})",
            path.display()
        )));
    }
    Ok(true)
}

/// An open agent connection.
pub type AgentSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One handshake attempt; `Err(Refused)` carries Jenkins' status (400 unknown node, 403 wrong
/// secret, 409 already connected).
pub async fn connect_once(
    args: &AgentArgs,
    cookie: Option<&str>,
) -> Result<(AgentSocket, Option<String>), AgentError> {
    let url = args.ws_url();
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| AgentError::Connect {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let bad = |e: String| AgentError::Connect {
        url: url.clone(),
        reason: e,
    };
    let h = req.headers_mut();
    h.insert(
        "Node-Name",
        HeaderValue::from_str(&args.name).map_err(|e| bad(e.to_string()))?,
    );
    h.insert(
        "Secret-Key",
        HeaderValue::from_str(&args.secret).map_err(|e| bad(e.to_string()))?,
    );
    // agent.jar sends its serialized Capability; any value satisfies the presence check.
    h.insert(
        "X-Remoting-Capability",
        HeaderValue::from_static("rO0ABXNyABpodWRzb24ucmVtb3RpbmcuQ2FwYWJpbGl0eQ=="),
    );
    if let Some(c) = cookie {
        h.insert(
            "Connection-Cookie",
            HeaderValue::from_str(c).map_err(|e| bad(e.to_string()))?,
        );
    }
    for (k, v) in &args.extra_headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
        h.insert(
            name,
            HeaderValue::from_str(v).map_err(|e| bad(e.to_string()))?,
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, resp)) => {
            let cookie = resp
                .headers()
                .get("Connection-Cookie")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok((socket, cookie))
        }
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(AgentError::Refused {
                status: resp.status().as_u16(),
                body,
            })
        }
        Err(e) => Err(AgentError::Connect {
            url,
            reason: e.to_string(),
        }),
    }
}

/// Polls `<url>login` until it answers 200, as agent.jar does before opening the socket.
async fn wait_for_login(args: &AgentArgs) -> Result<(), AgentError> {
    let url = format!("{}login", args.url);
    let resp = reqwest::get(&url).await.map_err(|e| AgentError::Connect {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(AgentError::Connect {
            url,
            reason: format!("HTTP {}", resp.status()),
        })
    }
}

/// Keeps the connection until it drops (`Ok`) or `shutdown` fires (`Err(())`).
async fn hold(
    mut socket: AgentSocket,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<(), ()> {
    loop {
        tokio::select! {
            msg = socket.next() => match msg {
                Some(Ok(Message::Ping(p))) => { let _ = socket.send(Message::Pong(p)).await; }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(()),
                Some(Ok(_)) => {}
            },
            _ = &mut *shutdown => {
                let _ = socket.close(None).await;
                return Err(());
            }
        }
    }
}

/// Runs the agent until `shutdown` completes: connect, hold, reconnect with backoff (1 s
/// doubling to 30 s). Returns the error if reconnecting is off (`-noReconnect`).
pub async fn run_until(
    args: AgentArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    if let Some(dir) = &args.work_dir {
        let internal = dir.join(&args.internal_dir);
        std::fs::create_dir_all(&internal).map_err(|source| AgentError::WorkDir {
            path: internal.display().to_string(),
            source,
        })?;
    }
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Duration::from_secs(1);
    let mut cookie: Option<String> = None;
    let mut jar_checked = false;
    loop {
        let attempt = async {
            wait_for_login(&args).await?;
            if !jar_checked {
                if !jar_matches_controller(&args).await? {
                    return Err(AgentError::Connect {
                        url: args.url.clone(),
                        reason: "agent.jar not downloadable yet".into(),
                    });
                }
                tracing::info!(jar = %args.jar_path().display(), "agent.jar matches the controller's");
                jar_checked = true;
            }
            connect_once(&args, cookie.as_deref()).await
        };
        let outcome = tokio::select! {
            r = attempt => r,
            _ = &mut shutdown => return Ok(()),
        };
        match outcome {
            Ok((socket, new_cookie)) => {
                tracing::info!(node = %args.name, "agent connected");
                cookie = new_cookie.or(cookie);
                backoff = Duration::from_secs(1);
                if hold(socket, &mut shutdown).await.is_err() {
                    tracing::info!(node = %args.name, "agent stopping");
                    return Ok(());
                }
                tracing::warn!(node = %args.name, "agent connection lost");
                if args.no_reconnect {
                    return Ok(());
                }
            }
            Err(e @ AgentError::AgentJar(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(node = %args.name, error = %e, "agent could not connect");
                if args.no_reconnect {
                    return Err(e);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Entry point of `ecs-provisioner sim-agent ARGS...`: runs until SIGTERM or Ctrl-C.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    run_until(args, termination()).await
}

/// Completes on SIGTERM or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<AgentArgs, AgentError> {
        AgentArgs::parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_emulated_jre_passes_the_default_java_check() {
        let v = ecsp_ssh::java_version::parse_java_version(JAVA_VERSION_BANNER).unwrap();
        assert!(v.major >= ecsp_ssh::bootstrap::DEFAULT_JAVA_MIN_VERSION, "{v:?}");
    }

    #[test]
    fn parses_agent_jar_flags_and_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "abc123\n").unwrap();
        let a = args(&[
            "-url",
            "http://127.0.0.1:8080",
            "-secret",
            &format!("@{}", file.display()),
            "-name",
            "n1",
            "-webSocket",
            "-workDir",
            "/tmp/w",
        ])
        .unwrap();
        assert_eq!(
            (a.url.as_str(), a.name.as_str(), a.secret.as_str()),
            ("http://127.0.0.1:8080/", "n1", "abc123")
        );
        assert_eq!(a.ws_url(), "ws://127.0.0.1:8080/wsagents/");
        assert!(!format!("{a:?}").contains("abc123"));
        let b = args(&[
            "--url",
            "https://j/",
            "--name",
            "n",
            "--secret",
            "s",
            "--webSocket",
        ])
        .unwrap();
        assert_eq!(b.ws_url(), "wss://j/wsagents/");
        assert!(
            args(&["-url", "http://j/", "-name", "n", "-secret", "s"])
                .unwrap_err()
                .to_string()
                .contains("-webSocket")
        );
        assert!(
            args(&["-url", "http://j/", "-name", "n", "-webSocket"])
                .unwrap_err()
                .to_string()
                .contains("-secret")
        );
        assert!(
            args(&["-bogus"])
                .unwrap_err()
                .to_string()
                .contains("unknown option")
        );
    }
}
