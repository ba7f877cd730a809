//! Registry configuration: mirrors, insecure (plain HTTP) registries and credentials.
//!
//! File format (`/etc/rauha/registries.toml`):
//! ```toml
//! [registries."docker.io"]
//! mirrors = ["127.0.0.1:5000"]
//! [registries."127.0.0.1:5000"]
//! insecure = true
//! username = "user"
//! password = "secret"
//! ```
//! Credentials from `~/.docker/config.json` (`auths.<host>.auth`, base64 `user:pass`) are used
//! for hosts the file gives none for. Credential helpers (`credsStore`) are not supported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::image::error::ImageError;
use crate::image::reference::DEFAULT_REGISTRY;

/// Settings for one registry host.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// Hosts tried, in order, before the registry itself.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Talk plain HTTP to this host (never implicit).
    #[serde(default)]
    pub insecure: bool,
    /// Basic/bearer-token credentials: user name.
    pub username: Option<String>,
    /// Basic/bearer-token credentials: password.
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    registries: BTreeMap<String, RegistryEntry>,
}

/// The registry configuration in force for pulls.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    registries: BTreeMap<String, RegistryEntry>,
    docker_auths: BTreeMap<String, (String, String)>,
}

impl RegistryConfig {
    /// Reads the TOML file at `path` (missing = defaults) plus the user's docker config auths.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(ImageError::io(path, e)),
        };
        if let Some(docker) = default_docker_config() {
            cfg.load_docker_config(&docker)?;
        }
        Ok(cfg)
    }

    /// Parses the TOML text of a registries file; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ImageError> {
        let file: ConfigFile = toml::from_str(text)
            .map_err(|e| ImageError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
        let mut registries = BTreeMap::new();
        for (host, entry) in file.registries {
            registries.insert(normalise_host(&host), entry);
        }
        Ok(Self { registries, docker_auths: BTreeMap::new() })
    }

    /// Adds the `auths` of a docker `config.json` (missing file = nothing added).
    pub fn load_docker_config(&mut self, path: &Path) -> Result<(), ImageError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ImageError::io(path, e)),
        };
        let bad = |reason: String| ImageError::Config { path: path.to_path_buf(), reason };
        let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            return Ok(());
        };
        for (key, entry) in auths {
            let Some(b64) = entry.get("auth").and_then(|a| a.as_str()) else {
                continue;
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| bad(format!("auths.{key}.auth: {e}")))?;
            let raw =
                String::from_utf8(raw).map_err(|_| bad(format!("auths.{key}.auth: not utf-8")))?;
            let (user, pass) = raw
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{key}.auth: not user:password")))?;
            self.docker_auths.insert(normalise_host(key), (user.to_string(), pass.to_string()));
        }
        Ok(())
    }

    /// Sets (replaces) the entry for `host`; for programmatic setup and tests.
    pub fn set(&mut self, host: &str, entry: RegistryEntry) {
        self.registries.insert(normalise_host(host), entry);
    }

    /// Hosts to try for `registry`: its mirrors in order, then the registry itself.
    pub fn endpoints(&self, registry: &str) -> Vec<String> {
        let mut v = self.registries.get(registry).map(|e| e.mirrors.clone()).unwrap_or_default();
        v.push(registry.to_string());
        v
    }

    /// Whether `host` is listed as plain HTTP.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.registries.get(host).is_some_and(|e| e.insecure)
    }

    /// All hosts listed as plain HTTP.
    pub fn insecure_hosts(&self) -> Vec<String> {
        self.registries.iter().filter(|(_, e)| e.insecure).map(|(h, _)| h.clone()).collect()
    }

    /// Credentials for `host`: the registries file first, then docker's config.
    pub fn credentials(&self, host: &str) -> Option<(String, String)> {
        if let Some(RegistryEntry { username: Some(u), password: Some(p), .. }) =
            self.registries.get(host)
        {
            return Some((u.clone(), p.clone()));
        }
        self.docker_auths.get(host).cloned()
    }
}

/// `$DOCKER_CONFIG/config.json` or `$HOME/.docker/config.json`.
fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Maps docker's spellings of Docker Hub (and URL forms of keys) onto our registry names.
fn normalise_host(key: &str) -> String {
    let k = key.trim_start_matches("https://").trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DEFAULT_REGISTRY.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_docker_auths() {
        let cfg = RegistryConfig::from_toml(
            r#"
            [registries."docker.io"]
            mirrors = ["127.0.0.1:5000"]
            [registries."127.0.0.1:5000"]
            insecure = true
            username = "u"
            password = "p"
            "#,
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(cfg.endpoints("docker.io"), ["127.0.0.1:5000", "docker.io"]);
        assert_eq!(cfg.endpoints("quay.io"), ["quay.io"]);
        assert!(cfg.is_insecure("127.0.0.1:5000"));
        assert!(!cfg.is_insecure("docker.io"));
        assert_eq!(cfg.credentials("127.0.0.1:5000"), Some(("u".into(), "p".into())));

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        // "alice:pw" in base64.
        std::fs::write(&p, r#"{"auths":{"https://index.docker.io/v1/":{"auth":"YWxpY2U6cHc="}}}"#)
            .unwrap();
        let mut cfg = cfg;
        cfg.load_docker_config(&p).unwrap();
        assert_eq!(cfg.credentials("docker.io"), Some(("alice".into(), "pw".into())));
        assert!(RegistryConfig::from_toml("bogus = 1", Path::new("t")).is_err());
    }

    #[test]
    fn missing_file_is_default() {
        let cfg = RegistryConfig::load(Path::new("/nonexistent/registries.toml")).unwrap();
        assert_eq!(cfg.endpoints("docker.io"), ["docker.io"]);
    }
}
