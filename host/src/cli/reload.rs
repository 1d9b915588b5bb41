//! Running as a service: what a SIGHUP changes, and telling systemd where the process is.
//!
//! A reload re-reads the config file and compares listeners by group (a group runs at most one
//! listener in a process): an unchanged listener keeps running untouched, mid-call and all; a
//! removed one is shut down gracefully; a changed one is shut down and started again with its
//! new settings; a new one is started. A file that does not load changes nothing (the error is
//! logged and the running listeners carry on). Settings outside `[[listener]]` (name servers,
//! `[engine]`, `[acl]`) are shared by every listener and take effect at the next start.

use std::path::Path;

use super::run::{
    ListenerSection, RunConfig, Running, Shared, print_final_stats, start_listener, stop_listener,
};

/// SIGHUP as a stream; on a platform (or in a process) without it, never fires.
pub(crate) struct Hangup(Option<tokio::signal::unix::Signal>);

impl Hangup {
    pub(crate) fn new() -> Self {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Self(Some(s)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; config reloads are off");
                Self(None)
            }
        }
    }

    pub(crate) async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Re-reads `path` and applies its listener changes to `running` (see the module doc).
pub(crate) async fn reload(
    path: &Path,
    started_with: &RunConfig,
    shared: &Shared,
    running: &mut Vec<Running>,
) {
    notify_reloading();
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    let config = match RunConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "reload refused; the running listeners carry on"
            );
            notify_ready(running.len());
            return;
        }
    };
    if config.namesrv.to_vec() != started_with.namesrv.to_vec()
        || config.engine_config().max_instances != started_with.engine_config().max_instances
        || config.acl.is_some() != started_with.acl.is_some()
    {
        tracing::warn!("namesrv, [engine] and [acl] changes take effect at the next start");
    }
    let slots: u32 = config.listeners.iter().map(|l| l.consumer_config().consume_thread_max).sum();
    if slots > shared.max_instances {
        tracing::error!(
            slots,
            max_instances = shared.max_instances,
            "reload refused: the listeners' slots together exceed the sandbox pool sized at start; restart to grow it"
        );
        notify_ready(running.len());
        return;
    }
    let current: Vec<ListenerSection> = running.iter().map(|r| r.section.clone()).collect();
    let plan = plan(&current, &config.listeners);
    // Stop first: a changed listener's group must leave before its new version joins.
    for &i in plan.stop.iter().rev() {
        let r = running.remove(i);
        tracing::info!(listener = r.listener.name(), "reload: stopping");
        print_final_stats(&*stop_listener(r).await);
    }
    for &i in &plan.start {
        let section = &config.listeners[i];
        match start_listener(shared, section).await {
            Ok(r) => running.push(r),
            Err(e) => tracing::error!(
                listener = section.group,
                error = format!("{e:#}"),
                "reload: listener failed to start"
            ),
        }
    }
    tracing::info!(
        stopped = plan.stop.len(),
        started = plan.start.len(),
        kept = plan.kept,
        "reload done"
    );
    notify_ready(running.len());
}

/// What a reload does.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Indexes (into the running list) of listeners to shut down: removed or changed.
    pub stop: Vec<usize>,
    /// Indexes (into the new list) of listeners to start: added or changed.
    pub start: Vec<usize>,
    /// How many run on untouched.
    pub kept: usize,
}

/// Compares the running listeners with the file's.
pub(crate) fn plan(running: &[ListenerSection], wanted: &[ListenerSection]) -> Plan {
    let mut p = Plan::default();
    for (i, r) in running.iter().enumerate() {
        match wanted.iter().find(|w| w.group == r.group) {
            Some(w) if w == r => p.kept += 1,
            _ => p.stop.push(i),
        }
    }
    for (i, w) in wanted.iter().enumerate() {
        if running.iter().find(|r| r.group == w.group) != Some(w) {
            p.start.push(i);
        }
    }
    p
}

/// Tells systemd (when it started us with `Type=notify`) that the listeners run; a no-op
/// otherwise.
pub(crate) fn notify_ready(listeners: usize) {
    let status = format!("{listeners} listener(s) running");
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
}

/// Tells systemd a reload started (with the monotonic time `Type=notify-reload` needs).
pub(crate) fn notify_reloading() {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
        Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
    }
}

/// Tells systemd the shutdown started.
pub(crate) fn notify_stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::run::RunConfig;

    fn listeners(spec: &[(&str, &str)]) -> Vec<ListenerSection> {
        let mut text = "namesrv = \"127.0.0.1:9876\"\n".to_owned();
        for (group, topic) in spec {
            text.push_str(&format!(
                "[[listener]]\ngroup = \"{group}\"\ntopic = \"{topic}\"\nwasm = \"p.wasm\"\n"
            ));
        }
        RunConfig::parse(&text).unwrap().listeners
    }

    #[test]
    fn reloads_touch_only_what_changed() {
        let running = listeners(&[("a", "t1"), ("b", "t2"), ("c", "t3")]);
        let table = [
            // (new file, stop, start, kept)
            (vec![("a", "t1"), ("b", "t2"), ("c", "t3")], vec![], vec![], 3),
            (vec![("a", "t1"), ("b", "t2"), ("c", "t3"), ("d", "t4")], vec![], vec![3], 3),
            (vec![("a", "t1"), ("c", "t3")], vec![1], vec![], 2),
            (vec![("a", "t1"), ("b", "other"), ("c", "t3")], vec![1], vec![1], 2),
            (vec![("c", "t3"), ("a", "t1")], vec![1], vec![], 2),
            (vec![("x", "t1")], vec![0, 1, 2], vec![0], 0),
        ];
        for (wanted, stop, start, kept) in table {
            let p = plan(&running, &listeners(&wanted));
            assert_eq!(p, Plan { stop, start, kept }, "{wanted:?}");
        }
    }
}
