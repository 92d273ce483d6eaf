//! cloud-init of emulated instances: runs an instance's user data once, when it first becomes
//! `Running`, as a real process on the instance (see [`super::ssh::SshEmulatorHandle::instance_command`]:
//! same directory, environment and process tag as an SSH `exec`), and copies what it prints to
//! the instance's console output (`GetInstanceConsoleOutput`), as cloud-init does.
//!
//! As with cloud-init, only user data starting with `#!` is run (through its interpreter line);
//! anything else is reported on the console and left alone.

use std::process::Stdio;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::process::Child;

use super::EmulatedInstance;
use super::ecs::Cloud;
use super::ssh::SshEmulatorHandle;

/// Starts the user data of every instance that just booted for the first time. The processes
/// are started here; only their output is followed in the background (which holds no part of
/// the SSH emulator, so that shutting it down still stops every instance process).
pub fn run_due(cloud: &Arc<Cloud>, host: &SshEmulatorHandle) {
    for (instance, script) in cloud.user_data_due() {
        let id = instance.instance_id.clone();
        match start(cloud, host, &instance, &script) {
            Ok(Some(child)) => {
                tokio::spawn(follow(cloud.clone(), id, child));
            }
            Ok(None) => {}
            Err(e) => cloud.append_console(&id, &format!("cloud-init: running the user data failed: {e}\n")),
        }
    }
}

/// Writes the user data to the instance and starts it; `None` when cloud-init would not run it.
fn start(cloud: &Cloud, host: &SshEmulatorHandle, instance: &EmulatedInstance, script: &str) -> std::io::Result<Option<Child>> {
    use std::os::unix::fs::PermissionsExt;
    let id = &instance.instance_id;
    if !script.starts_with("#!") {
        cloud.append_console(id, "cloud-init: Unhandled non-multipart (text/x-not-multipart) userdata: not run\n");
        return Ok(None);
    }
    let dir = host.instance_dir(id).join(".cloud-init");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("user-data");
    std::fs::write(&file, script)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o700))?;
    // Through its `#!` line, with stderr on stdout: the console shows both, in order.
    let child = host
        .instance_command(instance, "sh")?
        .arg("-c")
        .arg("exec \"$0\" 2>&1")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Some(child))
}

/// Copies what the script prints to the console until it exits.
async fn follow(cloud: Arc<Cloud>, id: String, mut child: Child) {
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => cloud.append_console(&id, &String::from_utf8_lossy(&buf[..n])),
            }
        }
    }
    match child.wait().await {
        Ok(status) => cloud.append_console(&id, &format!("cloud-init: user data finished ({status})\n")),
        Err(e) => cloud.append_console(&id, &format!("cloud-init: waiting for the user data failed: {e}\n")),
    }
}
