//! Image references: `[registry[:port]/]repository[:tag][@sha256:digest]`.

use serde::Deserializer;

use crate::names::CheckedStr;

/// A checked image reference, split into its parts (no defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io`, `localhost:5000`; `None` when the reference names no registry.
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

const HINT: &str = "hint: write an image like docker.io/library/nginx:1.27, nginx:1.27 or registry.local:5000/app@sha256:<64 hex digits>";

fn path_component_ok(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or runs of '-'.
    let bytes = c.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let sep_start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok || sep.is_empty() {
            return false;
        }
    }
    true
}

fn registry_ok(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || r.starts_with('[') => (h, Some(p)),
        _ => (r, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| format!("invalid image reference `{text}`: {why}; {HINT}");
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("it contains whitespace"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest must start with sha256:"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(bad("a sha256 digest has 64 lowercase hex digits"));
                }
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad(
                    "a tag is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                ));
            }
        }
        if name.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        // The first part is a registry when it looks like a host (as docker decides).
        let registry = if parts.len() > 1
            && (parts[0].contains(['.', ':'])
                || parts[0] == "localhost"
                || parts[0].starts_with('['))
        {
            let r = parts.remove(0);
            if !registry_ok(r) {
                return Err(bad("the registry is not a valid host[:port]"));
            }
            Some(r.to_string())
        } else {
            None
        };
        for p in &parts {
            if !path_component_ok(p) {
                return Err(bad(
                    "repository parts are lowercase letters and digits joined by '.', '_', '__' or '-'",
                ));
            }
        }
        Ok(ImageRef {
            registry,
            repository: parts.join("/"),
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

/// `deserialize_with` for `image`: checks the reference, keeps the text as written.
pub(crate) fn image_ref<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(CheckedStr(|text| ImageRef::parse(text).map(|_| ())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_references() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("nginx", None, "nginx", None, None),
            ("nginx:1.27", None, "nginx", Some("1.27"), None),
            (
                "docker.io/library/nginx:1.27",
                Some("docker.io"),
                "library/nginx",
                Some("1.27"),
                None,
            ),
            (
                "localhost:5000/app",
                Some("localhost:5000"),
                "app",
                None,
                None,
            ),
            (
                "localhost/app:v1",
                Some("localhost"),
                "app",
                Some("v1"),
                None,
            ),
            (
                "ghcr.io/a/b-c__d.e/f:latest",
                Some("ghcr.io"),
                "a/b-c__d.e/f",
                Some("latest"),
                None,
            ),
        ];
        for (text, registry, repository, tag, dig) in cases {
            let r = ImageRef::parse(text).unwrap();
            assert_eq!(
                (
                    r.registry.as_deref(),
                    r.repository.as_str(),
                    r.tag.as_deref(),
                    r.digest.as_deref()
                ),
                (registry, repository, tag, dig),
                "{text}"
            );
        }
        let text = format!("registry.local:5000/app:1@{digest}");
        let r = ImageRef::parse(&text).unwrap();
        assert_eq!(r.registry.as_deref(), Some("registry.local:5000"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
    }

    #[test]
    fn bad_references() {
        let cases = [
            ("", "it is empty"),
            ("Nginx", "repository parts are lowercase"),
            ("nginx:", "a tag is"),
            ("nginx@sha256:abc", "64 lowercase hex"),
            ("nginx@md5:abc", "must start with sha256:"),
            ("my image", "whitespace"),
            ("a//b", "repository parts"),
            ("bad_host.:5000/x", "registry is not a valid"),
        ];
        for (text, want) in cases {
            let err = ImageRef::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("hint: write an image like"), "{err}");
        }
    }
}
