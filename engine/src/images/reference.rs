//! Image references as Docker users write them, normalized to `registry/repository:tag`.

use oci_client::Reference;

use super::digest::Digest;

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `library/busybox`.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// The pinned manifest digest, if any.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parse as Docker does: `busybox` → `docker.io/library/busybox:latest`, `library/x`,
    /// `host:port/repo:tag`, `repo@sha256:…`. Errors name what is wrong.
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        if reference.trim() != reference || reference.is_empty() {
            return Err("empty or surrounded by whitespace".to_string());
        }
        let parsed: Reference = reference.parse().map_err(|e| format!("{e}"))?;
        let digest = match parsed.digest() {
            None => None,
            Some(d) => Some(
                Digest::parse(d)
                    .ok_or_else(|| format!("digest {d:?} is not sha256:<64 lowercase hex>"))?,
            ),
        };
        // oci-client keeps `index.docker.io` distinct in one path; Docker folds it into docker.io.
        let registry = match parsed.registry() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            r => r.to_string(),
        };
        let tag = match (parsed.tag(), &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            registry,
            repository: parsed.repository().to_string(),
            tag,
            digest,
        })
    }

    /// What to ask the registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The oci-client reference of this image served by `host` (a mirror or the registry).
    pub fn at_host(&self, host: &str) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), Some(t)) => Reference::with_tag_and_digest(
                host.to_string(),
                self.repository.clone(),
                t.clone(),
                d.to_string(),
            ),
            (Some(d), None) => {
                Reference::with_digest(host.to_string(), self.repository.clone(), d.to_string())
            }
            (None, t) => Reference::with_tag(
                host.to_string(),
                self.repository.clone(),
                t.clone().unwrap_or_else(|| "latest".to_string()),
            ),
        }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// The reference of exactly the image `digest` of `reference`'s repository
/// (`docker.io/library/busybox@sha256:…`): what a pull records besides the tag, so the image
/// is found again offline after the tag moves. `None` for a reference that does not parse or
/// a digest that is not `sha256:<64 hex>`.
pub fn pinned_reference(reference: &str, digest: &str) -> Option<String> {
    let mut r = ImageRef::parse(reference).ok()?;
    r.tag = None;
    r.digest = Some(Digest::parse(digest)?);
    Some(r.to_string())
}

/// Normalize a reference string the way Docker does, e.g. `busybox` →
/// `docker.io/library/busybox:latest`.
pub fn normalize_reference(reference: &str) -> Result<String, String> {
    ImageRef::parse(reference).map(|r| r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize_reference(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn pinned_references_name_the_repository_at_the_digest() {
        let d = format!("sha256:{}", "c".repeat(64));
        assert_eq!(
            pinned_reference("busybox:1.36", &d).as_deref(),
            Some(format!("docker.io/library/busybox@{d}").as_str())
        );
        assert_eq!(pinned_reference("busybox:1.36", "sha256:short"), None);
        assert_eq!(pinned_reference("Not A Ref", &d), None);
    }

    #[test]
    fn normalizes_like_docker() {
        let d = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(
            norm("docker.io/library/busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("127.0.0.1:5000/library/busybox:1.36"),
            "127.0.0.1:5000/library/busybox:1.36"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("ghcr.io/org/app/sub:v1"), "ghcr.io/org/app/sub:v1");
        assert_eq!(
            norm(&format!("ghcr.io/org/app@{d}")),
            format!("ghcr.io/org/app@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1.36@{d}")),
            format!("docker.io/library/busybox:1.36@{d}")
        );
    }

    #[test]
    fn splits_parts_and_picks_what_to_fetch() {
        let r = ImageRef::parse("127.0.0.1:5000/library/busybox:1.36").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert_eq!(r.manifest_ref(), "1.36");
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = ImageRef::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        let at = r.at_host("127.0.0.1:9");
        assert_eq!(at.resolve_registry(), "127.0.0.1:9");
        assert_eq!(at.repository(), "library/busybox");
        assert_eq!(at.digest(), Some(d.as_str()));
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            " busybox",
            "Busybox",
            "busybox@sha256:abc",
            "a//b",
            "busybox:",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let upper = format!("busybox@sha256:{}", "AB".repeat(32));
        assert_eq!(
            ImageRef::parse(&upper).unwrap_err(),
            format!(
                "digest \"sha256:{}\" is not sha256:<64 lowercase hex>",
                "AB".repeat(32)
            )
        );
    }
}
