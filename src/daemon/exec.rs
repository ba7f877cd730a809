//! `exec`: a process started by the zone's shim inside a running container's namespaces,
//! cgroup and privileges. Its stdio (a PTY master, or pipes) goes to the client as fds; the
//! exit code arrives as the shim's `ExecExited` event.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::Daemon;
use super::error::RequestError;
use super::shims::ShimCallError;
use crate::container::{self, ContainerState};
use crate::rpc::ExecRequest;
use crate::shim::protocol::{ExecSpec, ShimRequest, ShimResponse};

impl Daemon {
    /// Start `request` in its container; returns the exec id and the client's stdio fds
    /// (with a TTY the PTY master alone; else stdin's write end when interactive, then the
    /// stdout and stderr read ends).
    pub fn exec_container(
        &self,
        request: ExecRequest,
    ) -> Result<(String, Vec<OwnedFd>), RequestError> {
        if request.command.is_empty() {
            return Err(RequestError::InvalidArgument(
                "command: at least the program is required".into(),
            ));
        }
        if request.tty_size.is_some() && !request.tty {
            return Err(RequestError::InvalidArgument("tty_size: given without a tty".into()));
        }
        for entry in &request.env {
            if entry.split_once('=').is_none_or(|(key, _)| key.is_empty()) {
                return Err(RequestError::InvalidArgument(format!(
                    "env: {entry:?} is not KEY=VALUE"
                )));
            }
        }
        let container = self.find_container(&request.container)?;
        if container.state != ContainerState::Running {
            return Err(RequestError::ContainerState {
                container: container.name,
                state: container.state.as_str(),
                action: "exec",
            });
        }
        let zone = self.zone_of(&container)?;
        // The container's own process settings (from its OCI spec) are the defaults.
        let config_path = self.container_dir(container.id).join("config.json");
        let spec = oci_spec::runtime::Spec::load(&config_path).map_err(|e| RequestError::Io {
            path: config_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let process = spec.process().clone().unwrap_or_default();
        let mut env = process.env().clone().unwrap_or_default();
        for entry in &request.env {
            let key = entry.split('=').next().unwrap_or_default();
            env.retain(|existing| existing.split('=').next() != Some(key));
            env.push(entry.clone());
        }
        let (uid, gid, additional_gids) = if request.user.is_empty() {
            let user = process.user();
            (user.uid(), user.gid(), user.additional_gids().clone().unwrap_or_default())
        } else {
            let (layers, _) = self.images.rootfs_layers(&container.image_digest)?;
            let user = container::resolve_user(&request.user, &layers)
                .map_err(|e| RequestError::InvalidArgument(e.to_string()))?;
            (user.uid, user.gid, user.additional_gids)
        };
        let cwd = if request.working_dir.is_empty() {
            process.cwd().clone()
        } else if request.working_dir.starts_with('/') {
            PathBuf::from(&request.working_dir)
        } else {
            return Err(RequestError::InvalidArgument(format!(
                "working_dir: {:?} must be an absolute path",
                request.working_dir
            )));
        };
        let exec_id = Uuid::new_v4().simple().to_string();
        let spec = ExecSpec {
            container_id: container.id.to_string(),
            exec_id: exec_id.clone(),
            args: request.command,
            env,
            cwd,
            uid,
            gid,
            additional_gids,
            tty: request.tty,
            tty_size: request.tty_size,
            interactive: request.interactive,
        };
        let shim = self.shims.get(zone.numeric_id).ok_or_else(|| RequestError::ContainerState {
            container: container.name.clone(),
            state: "without its shim",
            action: "exec",
        })?;
        self.expect_exit(&exec_id);
        match shim.call_with_fds(&ShimRequest::Exec(Box::new(spec))) {
            Ok((ShimResponse::ExecStarted { .. }, fds)) => {
                tracing::info!(container = %container.name, exec = %exec_id, "exec started");
                Ok((exec_id, fds))
            }
            Ok((other, _)) => {
                self.forget_exit(&exec_id);
                Err(ShimCallError::Unexpected {
                    zone: zone.numeric_id,
                    request: "Exec",
                    response: format!("{other:?}"),
                }
                .into())
            }
            Err(error) => {
                self.forget_exit(&exec_id);
                Err(error.into())
            }
        }
    }

    /// Register `key` as running, so that its exit is kept for [`Daemon::wait_exit`] even when
    /// it arrives before the waiter.
    pub(super) fn expect_exit(&self, key: &str) {
        let mut exits = self.exits.lock().unwrap_or_else(|e| e.into_inner());
        exits.insert(key.to_owned(), (Instant::now(), None));
    }

    /// Forget `key`: its process never started, or nobody will wait for it.
    pub(super) fn forget_exit(&self, key: &str) {
        self.exits.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Record an exec's exit (from the shim's event) and wake its waiter.
    pub(super) fn record_exec_exit(&self, exec_id: &str, code: i32) {
        let mut exits = self.exits.lock().unwrap_or_else(|e| e.into_inner());
        exits.retain(|_, (at, code)| worth_keeping(at.elapsed(), *code));
        exits.insert(exec_id.to_owned(), (Instant::now(), Some(code)));
        self.exec_done.notify_all();
    }

    /// Block until the exec has exited; returns its shell-style exit code (once).
    pub fn wait_exec(&self, exec_id: &str) -> Result<i32, RequestError> {
        loop {
            if let Some(code) = self.wait_exit(exec_id, Duration::from_secs(3600))? {
                return Ok(code);
            }
        }
    }

    /// Wait up to `timeout` for the exit recorded under `key` (an exec id, or the container id
    /// of a `zone verify` probe); returns its shell-style code once, `None` on timeout.
    pub(super) fn wait_exit(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<i32>, RequestError> {
        let deadline = Instant::now() + timeout;
        let mut exits = self.exits.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match exits.get(key) {
                None => return Err(RequestError::ExecNotFound(key.to_owned())),
                Some((_, Some(code))) => {
                    let code = *code;
                    exits.remove(key);
                    return Ok(Some(code));
                }
                Some((_, None)) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return Ok(None);
                    };
                    exits = self
                        .exec_done
                        .wait_timeout(exits, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

/// Whether an entry of the exits map stays: a process still running always does (its waiter
/// may wait for hours, and forgetting it would fail that wait as unknown), a recorded exit for
/// [`super::FINISHED_RETENTION`] after it came.
fn worth_keeping(age: Duration, code: Option<i32>) -> bool {
    code.is_none() || age < super::FINISHED_RETENTION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_processes_are_kept_and_old_exits_forgotten() {
        let long = super::super::FINISHED_RETENTION * 2;
        assert!(worth_keeping(long, None), "a long-running exec keeps its entry");
        assert!(!worth_keeping(long, Some(0)), "an old exit is forgotten");
        assert!(worth_keeping(Duration::from_secs(1), Some(0)), "a fresh exit is kept");
    }
}
