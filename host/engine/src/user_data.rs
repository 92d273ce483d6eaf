//! User-data launches: the Jenkins node exists before its instance.
//!
//! RunInstances carries the node's secret in the instance's user data, so the node is created
//! first, under a name made from the launch ([`user_data_node_name`]), and the instance carries
//! that name in a tag. Each instance is its own RunInstances (amount 1): one user data, one
//! secret. While the call is in flight the node is booked in [`Book::pending_nodes`] so the
//! lifecycle pass does not delete it as "instance gone"; a failed launch deletes it at once (and
//! the lifecycle pass deletes it later if that delete fails or the process dies first).
//! Nothing connects into the instance, so when its agent never comes online the only account
//! of why is its console output: its tail goes into the launch-timeout reason.
//!
//! [`Book::pending_nodes`]: super::lifecycle::Book::pending_nodes

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::act::JENKINS_CONCURRENCY;
use super::decide::PolicyPort;
use super::lifecycle::{Chore, LAUNCH_TIMEOUT};
use super::model::{Node, Offering, user_data_node_name};
use super::ports::{BootstrapPort, CloudPort, JenkinsPort, LaunchError, NodeRegistration, UserDataNode};
use super::{CycleReport, Engine};

/// Launches of one user-data batch: (instance id, node name) of each that worked, and the
/// first error (a capacity error if there was one, so the offering is avoided).
pub(crate) type UserDataOutcome = (Vec<(String, Option<String>)>, Option<LaunchError>);

/// Console lines kept in a failure reason.
const CONSOLE_TAIL_LINES: usize = 12;
/// Longest console tail kept in a failure reason, bytes.
const CONSOLE_TAIL_BYTES: usize = 2_000;

/// The last lines of a console output, printable characters only and bounded: the text comes
/// from the instance and ends up in logs and on the status page.
pub fn console_tail(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(printable)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut tail = lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join(" | ");
    if tail.len() > CONSOLE_TAIL_BYTES {
        let mut start = tail.len() - CONSOLE_TAIL_BYTES;
        while !tail.is_char_boundary(start) {
            start += 1;
        }
        tail = format!("...{}", &tail[start..]);
    }
    tail
}

/// A console line without its terminal colour sequences (`ESC [ ... m`, as systemd prints
/// them) and other control characters.
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // A CSI sequence runs to its final byte, '@' to '~'.
            if chars.clone().next() == Some('[') {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out
}

impl<C, J, B, P, F> Engine<C, J, B, P, F>
where
    C: CloudPort,
    J: JenkinsPort,
    B: BootstrapPort,
    P: PolicyPort,
    F: PolicyPort,
{
    /// Launches `amount` user-data instances of `template` on `o`, each with its own node.
    pub(crate) async fn launch_user_data(&self, template: &str, o: &Offering, amount: u32) -> UserDataOutcome {
        let batch = self.launch_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let results: Vec<Result<(String, String), LaunchError>> = futures::stream::iter(0..amount)
            .map(|i| async move {
                let created = self.clock_ms();
                // Unique within this process (batch, index) and across processes (run id).
                let digest = Sha256::digest(format!("{}/{}/{batch}/{i}", self.config.controller_id, self.run_id));
                let unique = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
                let name = user_data_node_name(template, created, unique);
                self.launch_one_user_data(template, o, name).await
            })
            .buffer_unordered(JENKINS_CONCURRENCY)
            .collect()
            .await;
        let mut launched = Vec::new();
        let mut error: Option<LaunchError> = None;
        for r in results {
            match r {
                Ok((id, node)) => launched.push((id, Some(node))),
                Err(e) => {
                    let capacity = matches!(e, LaunchError::Capacity { .. });
                    if error.as_ref().is_none_or(|first| capacity && !matches!(first, LaunchError::Capacity { .. })) {
                        error = Some(e);
                    }
                }
            }
        }
        (launched, error)
    }

    /// Node, secret, RunInstances; the node is deleted again if the launch fails.
    async fn launch_one_user_data(&self, template: &str, o: &Offering, name: String) -> Result<(String, String), LaunchError> {
        let key = name[template.len() + 1..].to_owned();
        self.book.lock().unwrap().pending_nodes.insert(name.clone(), self.clock_ms());
        let registration = NodeRegistration {
            name: name.clone(),
            template: template.to_owned(),
            instance_id: key,
            zone: o.zone.clone(),
            instance_type: o.instance_type.clone(),
        };
        let prepared = async {
            self.jenkins.create_node(&registration).await?;
            self.jenkins.agent_secret(&name).await
        }
        .await;
        let result = match prepared {
            Ok(secret) => {
                let node = UserDataNode { name: name.clone(), secret };
                self.launch_batch(template, o, 1, Some(node)).await.and_then(|ids| match ids.as_slice() {
                    [id] => Ok(id.clone()),
                    other => Err(LaunchError::Other {
                        code: "UnexpectedAmount".into(),
                        label: "other",
                        message: format!("RunInstances of one user-data instance returned {} ids", other.len()),
                    }),
                })
            }
            Err(e) => Err(LaunchError::Other {
                code: "JenkinsNode".into(),
                label: "other",
                message: format!("preparing node {name} for a user-data launch: {e:#}"),
            }),
        };
        match result {
            Ok(id) => Ok((id, name)),
            Err(e) => {
                // Nothing will ever connect as this node. If this delete fails (or the process
                // dies first), the lifecycle pass deletes it once its launch is past the grace.
                match self.jenkins.delete_node(&name).await {
                    Ok(()) => tracing::info!(node = %name, error = %e, "user-data launch failed; its node deleted"),
                    Err(d) => tracing::warn!(node = %name, error = %format!("{d:#}"), "deleting the node of a failed user-data launch failed; retried later"),
                }
                self.book.lock().unwrap().pending_nodes.remove(&name);
                Err(e)
            }
        }
    }

    /// A user-data agent that never came online cannot be asked why: the reason of each one
    /// terminated for its launch timeout gets the tail of the instance's console output, and
    /// the failure is reported (log, `/status`).
    pub(crate) async fn explain_launch_timeouts(&self, chores: &mut [Chore], nodes: &[Node], report: &mut CycleReport) {
        let user_data = |id: &str| {
            nodes
                .iter()
                .find(|n| n.instance_id() == id)
                .and_then(|n| self.config.template(n.template()))
                .is_some_and(|t| t.launch == ecsp_config::LaunchMode::UserData)
        };
        let targets: Vec<(usize, String)> = chores
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Chore::Terminate { instance_id, reason } if reason.starts_with(LAUNCH_TIMEOUT) && user_data(instance_id) => {
                    Some((i, instance_id.clone()))
                }
                _ => None,
            })
            .collect();
        let tails: Vec<(usize, String)> = futures::stream::iter(targets)
            .map(|(i, id)| async move {
                let tail = match self.cloud.console_output(&id).await {
                    Ok(text) => format!("console output ends with: {}", console_tail(&text)),
                    Err(e) => format!("console output unavailable: {e:#}"),
                };
                (i, tail)
            })
            .buffer_unordered(JENKINS_CONCURRENCY)
            .collect()
            .await;
        for (i, tail) in tails {
            if let Chore::Terminate { instance_id, reason } = &mut chores[i] {
                *reason = format!("{reason}; the user-data agent never connected; {tail}");
                tracing::warn!(instance = %instance_id, reason = %reason, "user-data launch failed");
                report.errors.push(format!("instance {instance_id}: {reason}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::console_tail;

    #[test]
    fn the_console_tail_keeps_the_last_printable_lines_bounded() {
        let text: String = (0..50).map(|i| format!("line {i}\x1b[0m\n\n")).collect();
        let tail = console_tail(&text);
        assert!(tail.starts_with("line 38 |") && tail.ends_with("line 49"), "{tail}");
        assert!(!tail.contains('\x1b'));
        let long = format!("{}\n", "é".repeat(5_000));
        let tail = console_tail(&long);
        assert!(tail.starts_with("...") && tail.len() <= 2_003 + 1, "{}", tail.len());
    }
}
