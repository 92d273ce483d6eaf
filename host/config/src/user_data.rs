//! `launch = "user-data"`: the instance starts its own agent from a cloud-init script.
//!
//! The script is rendered on the host for one node, just before RunInstances, from
//! `user-data-script` (default [`DEFAULT_USER_DATA_SCRIPT`]). Its placeholders are those of
//! `agent-command` that are known before the instance exists, plus `{agent_command}` (the
//! rendered agent command, as one shell word), `{init_script}` (the template's init script, as
//! one shell word) and `{secret}` (the node's agent secret), which is allowed only here. Values
//! are inserted shell-quoted. The instance id and IP are not known before the launch, so
//! `{instance_id}`, `{ip}` and `{user}` are refused.

use serde::Deserialize;

use super::TemplateConfig;
use ecsp_ssh::template::render_with_words;

/// How a template's agents are started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchMode {
    /// The host connects over SSH, runs the init script and starts the agent.
    #[default]
    Ssh,
    /// The instance starts its agent from its user data; nothing connects into it.
    UserData,
}

/// The default `user-data-script`. cloud-init runs it as root once, at the instance's first
/// boot; what it prints is on the instance's console (`GetInstanceConsoleOutput`), which the
/// host shows when the agent never comes online.
pub const DEFAULT_USER_DATA_SCRIPT: &str = r#"#!/bin/sh
# ecs-provisioner: user-data launch of Jenkins node {node_name}.
# Fetches agent.jar from the controller, writes the node's secret into a 0600 file, runs the
# init script once and keeps the agent running. No connection goes into the instance.
# Relative paths are relative to the directory cloud-init runs this in.
work_dir={work_dir}
state="$work_dir/.ecs-provisioner"
mkdir -p "$state" && state=$(cd "$state" && pwd) || exit 1
echo "ecs-provisioner: node {node_name}: preparing $work_dir"
(umask 077 && printf '%s\n' {secret} > {secret_file}) || exit 1
tries=0
until curl -fsS -o {agent_jar}.part {jenkins_url}jnlpJars/agent.jar || wget -q -O {agent_jar}.part {jenkins_url}jnlpJars/agent.jar; do
  tries=$((tries + 1))
  if [ "$tries" -ge 30 ]; then echo "ecs-provisioner: cannot download agent.jar from {jenkins_url}"; exit 1; fi
  sleep 2
done
mv -f {agent_jar}.part {agent_jar} || exit 1
if [ ! -e "$state/init.done" ]; then
  printf '%s\n' {init_script} > "$state/init.sh" && chmod 700 "$state/init.sh" || exit 1
  echo "ecs-provisioner: running the init script"
  case "$(head -c 2 "$state/init.sh")" in
    '#!') run="$state/init.sh" ;;
    *) run="sh $state/init.sh" ;;
  esac
  if ! (cd "$work_dir" && ECSP_NODE_NAME={node_name} ECSP_WORK_DIR="$work_dir" ECSP_JENKINS_URL={jenkins_url} $run); then
    echo "ecs-provisioner: the init script failed; the agent is not started"
    exit 1
  fi
  touch "$state/init.done"
fi
echo "ecs-provisioner: starting the agent"
nohup setsid sh -c 'while :; do sh -c "$1"; echo "ecs-provisioner: agent exited ($?); restarting in 10s"; sleep 10; done' agent {agent_command} > "$state/agent.log" 2>&1 < /dev/null &
echo $! > "$state/agent.pid"
sleep 3
tail -n 20 "$state/agent.log" | sed 's/^/agent: /'
"#;

/// Placeholders that stand for facts only known once the instance runs.
const UNKNOWN_BEFORE_LAUNCH: &[&str] = &["instance_id", "ip", "user"];

/// Renders the user-data script of one node: `jenkins_url` is where agents connect to.
pub fn render_user_data(t: &TemplateConfig, jenkins_url: &str, node_name: &str, secret: &str) -> Result<String, String> {
    let mut url = jenkins_url.to_owned();
    if !url.ends_with('/') {
        url.push('/');
    }
    let work_dir = t.remote_fs.trim_end_matches('/');
    let work_dir = if work_dir.is_empty() { "/" } else { work_dir };
    let secret_file = format!("{work_dir}/.ecs-provisioner/agent-secret");
    let agent_jar = format!("{work_dir}/agent.jar");
    let mut vars = vec![
        ("node_name", node_name),
        ("jenkins_url", url.as_str()),
        ("work_dir", work_dir),
        ("secret_file", secret_file.as_str()),
        ("agent_jar", agent_jar.as_str()),
        ("java", t.java_path.as_str()),
    ];
    let words: [(&str, &[String]); 1] = [("jvm_options", &t.jvm_options)];
    let agent_command = render_with_words(&t.agent_command, &vars, &words, true)
        .map_err(|e| format!("agent-command: {}", explain(e)))?;
    vars.extend([
        ("agent_command", agent_command.as_str()),
        ("init_script", t.init_script.as_str()),
        ("secret", secret),
    ]);
    let script = t.user_data_script.as_deref().unwrap_or(DEFAULT_USER_DATA_SCRIPT);
    render_with_words(script, &vars, &words, true).map_err(|e| format!("user-data-script: {}", explain(e)))
}

/// Adds why a placeholder the SSH launch knows is unknown here.
fn explain(error: String) -> String {
    if UNKNOWN_BEFORE_LAUNCH.iter().any(|p| error.contains(&format!("unknown placeholder {{{p}}}"))) {
        format!("{error} (with launch = \"user-data\" the instance id, IP and login user are not known when the script is rendered)")
    } else {
        error
    }
}

/// Checks a template's launch keys; `at` names the template.
pub(crate) fn validate(t: &TemplateConfig, at: &str, problems: &mut Vec<String>) {
    match t.launch {
        LaunchMode::Ssh => {
            if t.user_data_script.is_some() {
                problems.push(format!("{at}: user-data-script is used only with launch = \"user-data\""));
            }
        }
        LaunchMode::UserData => {
            if t.user_data.is_some() {
                problems.push(format!(
                    "{at}: user-data cannot be set with launch = \"user-data\" (the user data is the rendered user-data-script)"
                ));
            }
            let sample_secret = "0".repeat(64);
            match render_user_data(t, "https://jenkins.example/", "tpl-u-sample", &sample_secret) {
                Err(e) => problems.push(format!("{at}: {e}")),
                Ok(script) if script.len() > super::launch::MAX_USER_DATA => problems.push(format!(
                    "{at}: the rendered user-data-script is {} bytes; ECS takes at most {} (before base64)",
                    script.len(),
                    super::launch::MAX_USER_DATA
                )),
                Ok(script) if !script.contains(&sample_secret) => {
                    problems.push(format!("{at}: user-data-script must use {{secret}} (the agent cannot connect without it)"))
                }
                Ok(_) => {}
            }
        }
    }
    // `{secret}` only in the user-data script: anywhere else it would land on a command line
    // or in a log.
    if t.agent_command.contains("{secret}") {
        problems.push(format!("{at}: agent-command must not use {{secret}}; read it from {{secret_file}}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn template(extra: &str) -> Result<Config, String> {
        with_launch("user-data", extra)
    }

    fn with_launch(launch: &str, extra: &str) -> Result<Config, String> {
        Config::parse(&format!(
            r#"controller-id = "ci"
[cloud]
region = "cn-hangzhou"
vpc-id = "vpc-1"
security-group-id = "sg-1"
image-id = "img"
key-pair-name = "kp"
[jenkins]
url = "http://jenkins:8080"
user = "u"
[[template]]
name = "linux"
labels = ["linux"]
max-nodes = 2
launch = "{launch}"
{extra}
"#
        ))
    }

    #[test]
    fn the_default_script_renders_with_the_secret_and_quoted_values() {
        let c = template("init-script = \"echo 'hi'\"").unwrap();
        let t = &c.templates[0];
        let s = render_user_data(t, "http://ci:8080", "linux-u-1", "s3cret").unwrap();
        assert!(s.contains("printf '%s\\n' s3cret > /var/lib/jenkins-agent/.ecs-provisioner/agent-secret"), "{s}");
        assert!(s.contains("http://ci:8080/jnlpJars/agent.jar"), "{s}");
        assert!(s.contains("-name linux-u-1"), "{s}");
        assert!(s.contains(r#"'echo '\''hi'\'''"#), "the init script is one quoted word: {s}");
    }

    #[test]
    fn bad_user_data_settings_are_named() {
        let e = template("user-data = \"#!/bin/sh\"").unwrap_err();
        assert!(e.contains("template \"linux\"") && e.contains("user-data cannot be set"), "{e}");
        let e = template("user-data-script = \"echo {ip}\"").unwrap_err();
        assert!(e.contains("unknown placeholder {ip}") && e.contains("not known when the script is rendered"), "{e}");
        let e = template("user-data-script = \"echo no secret\"").unwrap_err();
        assert!(e.contains("must use {secret}"), "{e}");
        let e = template("agent-command = \"java -jar a.jar -secret {secret} @{secret_file}\"").unwrap_err();
        assert!(e.contains("agent-command must not use {secret}"), "{e}");
        let e = template(&format!("user-data-script = \"{{secret}}{}\"", "x".repeat(40_000))).unwrap_err();
        assert!(e.contains("at most 32768"), "{e}");
        assert!(template("user-data-script = \"{secret}\"").is_ok());
        let e = with_launch("ssh", "user-data-script = \"{secret}\"").unwrap_err();
        assert!(e.contains("user-data-script is used only with launch = \"user-data\""), "{e}");
    }
}
