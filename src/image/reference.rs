//! Image references, normalised the way Docker does.

use std::fmt;
use std::str::FromStr;

use crate::image::error::ImageError;

/// Registry assumed when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Tag assumed when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// A normalised image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/alpine`).
    pub repository: String,
    /// Tag, if given (defaults to `latest` when no digest is given either).
    pub tag: Option<String>,
    /// Manifest digest `sha256:<hex>`, if given.
    pub digest: Option<String>,
}

impl Reference {
    /// The reference without its digest, as stored in the tag table (`None` if untagged).
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}/{}:{}", self.registry, self.repository, t))
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ImageError::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        if s.len() > 512 {
            return Err(bad("longer than 512 bytes"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => {
                validate_digest(d).map_err(|_| bad("digest must be sha256:<64 lowercase hex>"))?;
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to host:port.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        if !valid_host(&registry) {
            return Err(bad("registry must be host[:port]"));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.len() > 255 {
            return Err(bad("repository longer than 255 bytes"));
        }
        if let Some(c) = repository.split('/').find(|c| !valid_component(c)) {
            return Err(bad(&format!(
                "repository component {c:?} must be lowercase alphanumerics separated by '.', '_', '__' or '-'"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { registry, repository, tag, digest })
    }
}

/// Checks `sha256:<64 lowercase hex>`, the only digest algorithm we store.
pub fn validate_digest(d: &str) -> Result<&str, ImageError> {
    match d.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => Err(ImageError::InvalidDigest { digest: d.to_string() }),
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.strip_prefix('[') {
        // IPv6 literal: [addr]:port or [addr].
        Some(rest) => match rest.split_once(']') {
            Some((addr, tail)) => {
                if addr.is_empty() || !addr.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
                    return false;
                }
                ("x", tail.strip_prefix(':'))
            }
            None => return false,
        },
        None => match h.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    port_ok
        && !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    // Separators: one '.', one or two '_', or any run of '-'; each between alphanumerics.
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("index.docker.io/library/x"), "docker.io/library/x:latest");
        assert_eq!(norm("127.0.0.1:5000/x/y:v1"), "127.0.0.1:5000/x/y:v1");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("quay.io/a/b/c"), "quay.io/a/b/c:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("alpine@{d}")), format!("docker.io/library/alpine@{d}"));
        assert_eq!(norm(&format!("127.0.0.1:5000/x/y:t@{d}")), format!("127.0.0.1:5000/x/y:t@{d}"));
        let r: Reference = "127.0.0.1:5000/x".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "x");
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine@sha256:abc",
            "alpine@md5:aaaa",
            "a//b",
            "-a",
            "a:b:c",
            "host:99999/x",
            "x:-tag",
            "a..b",
        ] {
            let e = bad.parse::<Reference>().unwrap_err();
            assert!(matches!(e, ImageError::InvalidReference { .. }), "{bad}: {e}");
        }
    }
}
