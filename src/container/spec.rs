//! The OCI runtime spec of a container, built from its image config, the request's overrides and
//! its zone's policy, and the shim's process description derived from that spec.
//!
//! The spec is written to the container's bundle as `config.json`, the same document runc or
//! crun would run; the shim implements runc's defaults for what the spec leaves to the runtime
//! (masked and read-only paths, the minimal `/dev`).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxNamespace, LinuxNamespaceType, Process, Root,
    Spec, User,
};

use super::ResolvedUser;
use crate::image::ImageConfig;
use crate::shim::protocol::{CgroupSpec, ContainerSpec, Layer, LogSpec, RootfsSpec};
use crate::zone::Policy;

/// The `PATH` a container gets when its image sets none (Docker's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a request may override of the image's defaults (`docker run` semantics).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the image's `Cmd` (the entrypoint stays).
    pub command: Vec<String>,
    /// `KEY=VALUE`, replacing same-named image variables.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub tty: bool,
}

/// A spec that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command: the image has no entrypoint or cmd and none was given")]
    NoCommand,
    #[error("env: {0:?} is not KEY=VALUE with a non-empty KEY")]
    Env(String),
    #[error("working dir {0:?} must be an absolute path")]
    WorkingDir(String),
    #[error("capability {0} is unknown to the OCI spec")]
    Capability(String),
    #[error("the spec lacks its {0}")]
    Incomplete(&'static str),
}

/// argv by Docker's rule: entrypoint + (command override, else the image's cmd).
pub fn resolve_args(image: &ImageConfig, command: &[String]) -> Result<Vec<String>, SpecError> {
    let cmd = if command.is_empty() { &image.cmd } else { command };
    let args: Vec<String> = image.entrypoint.iter().chain(cmd).cloned().collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// The environment: image variables, then overrides replacing same-named ones, plus `PATH`,
/// `HOSTNAME`, `HOME` and (with a TTY) `TERM` where unset.
pub fn resolve_env(
    image: &ImageConfig,
    overrides: &[String],
    hostname: &str,
    home: &str,
    tty: bool,
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: &str| -> Result<(), SpecError> {
        let Some((key, _)) = entry.split_once('=').filter(|(key, _)| !key.is_empty()) else {
            return Err(SpecError::Env(entry.to_owned()));
        };
        env.retain(|existing| existing.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(entry.to_owned());
        Ok(())
    };
    for entry in image.env.iter().chain(overrides) {
        set(entry)?;
    }
    let has = |env: &[String], key: &str| env.iter().any(|e| e.starts_with(&format!("{key}=")));
    let mut defaults =
        vec![DEFAULT_PATH.to_owned(), format!("HOSTNAME={hostname}"), format!("HOME={home}")];
    if tty {
        defaults.push("TERM=xterm".to_owned());
    }
    for default in defaults {
        let key = default.split('=').next().unwrap_or_default().to_owned();
        if !has(&env, &key) {
            env.push(default);
        }
    }
    Ok(env)
}

/// Everything the spec is built from.
pub struct SpecInputs<'a> {
    pub hostname: &'a str,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: &'a ResolvedUser,
    pub policy: &'a Policy,
    pub rootfs: &'a Path,
    pub netns: Option<&'a Path>,
    pub cgroups_path: &'a str,
    pub tty: bool,
}

fn oci_capabilities(policy: &Policy) -> Result<Capabilities, SpecError> {
    policy
        .capabilities
        .iter()
        .map(|cap| {
            serde_json::from_value::<Capability>(serde_json::Value::String(cap.name().to_owned()))
                .map_err(|_| SpecError::Capability(cap.name().to_owned()))
        })
        .collect()
}

/// Build the container's OCI runtime spec.
pub fn build(inputs: SpecInputs<'_>) -> Result<Spec, SpecError> {
    if !inputs.cwd.starts_with('/') {
        return Err(SpecError::WorkingDir(inputs.cwd));
    }
    let capabilities = oci_capabilities(inputs.policy)?;
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(capabilities.clone()));
    caps.set_effective(Some(capabilities.clone()));
    caps.set_permitted(Some(capabilities.clone()));
    caps.set_inheritable(Some(capabilities.clone()));
    // Like runc, a non-root user keeps its capabilities across exec only through the ambient set.
    caps.set_ambient(Some(if inputs.user.uid == 0 { Capabilities::new() } else { capabilities }));

    let mut user = User::default();
    user.set_uid(inputs.user.uid);
    user.set_gid(inputs.user.gid);
    user.set_additional_gids(Some(inputs.user.additional_gids.clone()));

    let mut process = Process::default();
    process.set_terminal(Some(inputs.tty));
    process.set_user(user);
    process.set_args(Some(inputs.args));
    process.set_env(Some(inputs.env));
    process.set_cwd(PathBuf::from(inputs.cwd));
    process.set_capabilities(Some(caps));
    process.set_no_new_privileges(Some(true));

    let mut root = Root::default();
    root.set_path(inputs.rootfs.to_owned());
    root.set_readonly(Some(true));

    let mut spec = Spec::default();
    spec.set_hostname(Some(inputs.hostname.to_owned()));
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    let mut linux = spec.linux().clone().ok_or(SpecError::Incomplete("linux section"))?;
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        if typ == LinuxNamespaceType::Network {
            ns.set_path(inputs.netns.map(Path::to_owned));
        }
        ns
    })
    .collect();
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(PathBuf::from(inputs.cgroups_path)));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Where the shim finds what the spec does not say: the overlay layout, cgroup directories,
/// log settings and generated files.
pub struct ShimInputs {
    pub id: String,
    pub rootfs: RootfsSpec,
    pub cgroup: CgroupSpec,
    pub log: LogSpec,
    pub resolv_conf: Option<String>,
    pub hosts: Option<String>,
    /// Layers switched off by the daemon's test-only `--unsafe-disable-layer`.
    pub disabled_layers: Vec<Layer>,
    /// Keep stdin open for attachers (`-i`); the TTY itself comes from the spec's
    /// `process.terminal`.
    pub interactive: bool,
    /// The first attacher's closing of stdin is the container's end of input (`run -i`).
    pub stdin_once: bool,
}

/// The shim's process description, derived from the spec so both say the same.
pub fn shim_spec(
    spec: &Spec,
    policy: &Policy,
    inputs: ShimInputs,
) -> Result<ContainerSpec, SpecError> {
    let process = spec.process().as_ref().ok_or(SpecError::Incomplete("process"))?;
    let user = process.user();
    let netns_path = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .and_then(|namespaces| namespaces.iter().find(|ns| ns.typ() == LinuxNamespaceType::Network))
        .and_then(|ns| ns.path().clone());
    Ok(ContainerSpec {
        id: inputs.id,
        hostname: spec.hostname().clone().unwrap_or_default(),
        args: process.args().clone().unwrap_or_default(),
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().clone(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        capabilities: policy.capabilities.iter().map(|cap| cap.number()).collect(),
        no_new_privs: process.no_new_privileges().unwrap_or(true),
        rootfs: inputs.rootfs,
        writable_paths: policy.filesystem.writable_paths.iter().map(PathBuf::from).collect(),
        syscall_deny: policy.syscalls.deny.clone(),
        devices: policy.devices.allowed.iter().map(PathBuf::from).collect(),
        disabled_layers: inputs.disabled_layers,
        cgroup: inputs.cgroup,
        netns_path,
        log: inputs.log,
        resolv_conf: inputs.resolv_conf,
        hosts: inputs.hosts,
        tty: process.terminal().unwrap_or(false),
        interactive: inputs.interactive,
        stdin_once: inputs.stdin_once,
        self_exec: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/bin/tini".into()],
            cmd: vec!["sh".into()],
            env: vec!["PATH=/opt/bin".into(), "A=1".into()],
            working_dir: String::new(),
            user: String::new(),
        }
    }

    #[test]
    fn args_follow_dockers_entrypoint_and_cmd_rule() {
        assert_eq!(resolve_args(&image(), &[]).unwrap(), ["/bin/tini", "sh"]);
        assert_eq!(resolve_args(&image(), &["true".into()]).unwrap(), ["/bin/tini", "true"]);
        assert!(matches!(resolve_args(&ImageConfig::default(), &[]), Err(SpecError::NoCommand)));
    }

    #[test]
    fn env_overrides_replace_and_defaults_fill_in() {
        let env =
            resolve_env(&image(), &["A=2".into(), "B=".into()], "web", "/root", true).unwrap();
        assert_eq!(env, ["PATH=/opt/bin", "A=2", "B=", "HOSTNAME=web", "HOME=/root", "TERM=xterm"]);
        assert!(matches!(
            resolve_env(&image(), &["=x".into()], "h", "/", false),
            Err(SpecError::Env(_))
        ));
        assert!(matches!(
            resolve_env(&image(), &["NOEQ".into()], "h", "/", false),
            Err(SpecError::Env(_))
        ));
    }

    #[test]
    fn spec_carries_policy_capabilities_user_and_namespaces() {
        let policy = Policy::parse("[capabilities]\nallowed = [\"CHOWN\", \"KILL\"]\n").unwrap();
        let user =
            ResolvedUser { uid: 1000, gid: 1000, additional_gids: vec![10], home: "/".into() };
        let spec = build(SpecInputs {
            hostname: "web",
            args: vec!["sh".into()],
            env: vec![DEFAULT_PATH.into()],
            cwd: "/srv".into(),
            user: &user,
            policy: &policy,
            rootfs: Path::new("/merged"),
            netns: Some(Path::new("/run/rauha/netns/zone-1")),
            cgroups_path: "rauha/zone-1/ctr",
            tty: false,
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 2);
        assert_eq!(json["process"]["capabilities"]["ambient"].as_array().unwrap().len(), 2);
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["hostname"], "web");
        let shim = shim_spec(
            &spec,
            &policy,
            ShimInputs {
                id: "c1".into(),
                rootfs: RootfsSpec {
                    lower_dirs: vec![],
                    upper_dir: "/u".into(),
                    work_dir: "/w".into(),
                    merged_dir: "/merged".into(),
                },
                cgroup: CgroupSpec { v2_dir: None, v1_dirs: vec![] },
                log: LogSpec { path: "/log".into(), max_size: 1, max_files: 1 },
                resolv_conf: None,
                hosts: None,
                disabled_layers: vec![],
                interactive: false,
                stdin_once: false,
            },
        )
        .unwrap();
        assert_eq!(shim.capabilities, [0, 5]);
        assert!(shim.disabled_layers.is_empty());
        assert_eq!(shim.netns_path.as_deref(), Some(Path::new("/run/rauha/netns/zone-1")));
        assert_eq!((shim.uid, shim.cwd.as_path()), (1000, Path::new("/srv")));
    }
}
