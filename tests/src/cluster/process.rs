//! The server processes of a local cluster: spawning one with a scrubbed environment, stopping it
//! by pid, and the watchdog that kills leaked servers when the owning process dies.

use std::fs;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdin;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;

use super::flavour::SERVER_MARKERS;

const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One server process.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) name: String,
    pub(crate) pid: u32,
    /// `None` when attached to a cluster this process did not start.
    pub(crate) child: Option<Child>,
    /// stdout + stderr of the process.
    pub(crate) log: PathBuf,
}

impl Server {
    /// A server this process did not start (attached through `cluster.env`).
    pub(crate) fn attached(name: String, pid: u32, log: PathBuf) -> Server {
        Server { name, pid, child: None, log }
    }

    /// `Some(description)` when the process has exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(error) => Some(format!("unknown state ({error})")),
            },
            None => (!pid_alive(self.pid)).then(|| "exited".to_owned()),
        }
    }

    /// SIGTERM, bounded wait, SIGKILL.
    pub(crate) fn stop(&mut self) -> Result<()> {
        match &mut self.child {
            Some(child) => {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                signal(self.pid, "TERM");
                let deadline = Instant::now() + STOP_GRACE;
                while Instant::now() < deadline {
                    if child.try_wait()?.is_some() {
                        return Ok(());
                    }
                    std::thread::sleep(POLL_INTERVAL);
                }
                child.kill().ok();
                child
                    .wait()
                    .with_context(|| format!("waiting for {} ({})", self.name, self.pid))?;
                Ok(())
            }
            None => stop_pid(self.pid),
        }
    }

    /// SIGKILL and reap: a crash, for fault tests.
    pub(crate) fn kill(&mut self) -> Result<()> {
        match &mut self.child {
            Some(child) => {
                child.kill().ok();
                child
                    .wait()
                    .with_context(|| format!("waiting for {} ({})", self.name, self.pid))?;
                Ok(())
            }
            None => {
                signal(self.pid, "KILL");
                Ok(())
            }
        }
    }
}

/// Spawns `command` with stdout and stderr in `log`, `HOME` and `ROCKETMQ_HOME` set to `home` and
/// nothing RocketMQ-related inherited from the environment.
pub(crate) fn spawn_server(
    name: String,
    command: &mut Command,
    home: &Path,
    log: &Path,
    watchdog: bool,
) -> Result<Server> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    // Nothing the test environment configures for RocketMQ (NAMESRV_ADDR, ROCKETMQ_*, RUST_LOG,
    // JAVA_TOOL_OPTIONS) may leak into the servers; HOME is redirected so that no default path
    // lands in the real home directory.
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("ROCKETMQ")
            || key_str == "NAMESRV_ADDR"
            || key_str == "RUST_LOG"
            || key_str == "JAVA_TOOL_OPTIONS"
            || key_str == "_JAVA_OPTIONS"
        {
            command.env_remove(&key);
        }
    }
    command
        .env("HOME", home)
        .env("ROCKETMQ_HOME", home)
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if !watchdog {
        // Detached: keep terminal signals (Ctrl-C in the shell that started it) away.
        command.process_group(0);
    }
    let child = command.spawn().with_context(|| format!("spawning the {name}: {command:?}"))?;
    Ok(Server { name, pid: child.id(), child: Some(child), log: log.to_path_buf() })
}

/// A `sh` process that reads pids (one a line) from its stdin until EOF — until every copy of the
/// write end is closed, i.e. until this process has exited, however it exited — then stops them
/// (TERM, bounded wait, KILL) and removes `remove_dir`. The write end is created close-on-exec, so
/// no other child inherits it. The watchdog runs in its own process group so that Ctrl-C does not
/// kill it before it has done its job. `Cluster::stop` kills it (SIGKILL) before stopping the
/// servers itself.
pub(crate) fn spawn_watchdog(remove_dir: Option<&Path>) -> Result<(Child, ChildStdin)> {
    // Pids arrive in start order (name server, brokers); they are stopped in reverse order, as
    // a broker shuts down slowly once its name server is gone.
    let script = format!(
        r#"
dir=$1; shift
pids=
while read -r p; do pids="$p $pids"; done
alive() {{ [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }}
for p in $pids; do
  # A server that died earlier may have had its pid reused: only signal our servers.
  grep -qaE '{markers}' "/proc/$p/cmdline" 2>/dev/null || continue
  kill -TERM "$p" 2>/dev/null || :
  i=0
  while alive "$p" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  if alive "$p"; then kill -KILL "$p" 2>/dev/null || :; fi
done
if [ -n "$dir" ]; then rm -rf "$dir"; fi
"#,
        markers = SERVER_MARKERS.join("|").replace('.', "\\.")
    );
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .arg("rmq-cluster-watchdog")
        .arg(remove_dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = command.spawn().context("spawning the cluster watchdog (sh)")?;
    let stdin = child.stdin.take().context("watchdog stdin")?;
    Ok((child, stdin))
}

/// True when `pid` exists and is not a zombie. (Orphaned servers are reparented to PID 1, which
/// on some CI machines never reaps them.)
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

/// True when `pid` is alive and runs one of the server programs of any flavour (guards against
/// pid reuse).
pub fn is_rocketmq_process(pid: u32) -> bool {
    pid_alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
            let cmd = String::from_utf8_lossy(&cmd);
            SERVER_MARKERS.iter().any(|marker| cmd.contains(marker))
        })
}

/// `kill -SIG pid` through `sh` (its builtin `kill`; a `kill` binary is not always installed).
pub(crate) fn signal(pid: u32, sig: &str) {
    let _ = Command::new("sh")
        .args(["-c", "kill -\"$1\" \"$2\" 2>/dev/null", "sh", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, bounded wait, SIGKILL — for a rocketmq process that is not our child.
pub fn stop_pid(pid: u32) -> Result<()> {
    if !is_rocketmq_process(pid) {
        return Ok(());
    }
    signal(pid, "TERM");
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return Ok(());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    signal(pid, "KILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return Ok(());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    bail!("process {pid} survived SIGKILL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_alive_sees_self_and_not_nonsense() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}
