//! Platform selection in an image index: os, architecture and variant of this host.
//!
//! oci-client's default resolver ignores `variant`, which hands ARMv6 devices ARMv7 images;
//! this one compares all three after normalizing them the way containerd does.

use std::fmt;

use oci_client::manifest::ImageIndexEntry;

/// An OCI platform, e.g. `linux/arm/v7`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// The platform of this host: the architecture we were built for and, on 32-bit ARM,
    /// the CPU's architecture level from `/proc/cpuinfo`.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        let variant = match arch {
            "arm64" => Some("v8".to_string()),
            "arm" => Some(arm_variant_of_host()),
            _ => None,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant,
        }
        .normalized()
    }

    /// Fold aliases (`x86_64`, `aarch64`, `armhf`) and default variants (`arm64` → `v8`,
    /// `arm` → `v7`, `amd64/v1` → no variant), so equal platforms compare equal.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let mut variant = self
            .variant
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase);
        let arch = match self.architecture.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => {
                if variant.as_deref() == Some("v1") {
                    variant = None;
                }
                "amd64".to_string()
            }
            "i386" | "i686" | "386" => "386".to_string(),
            "aarch64" | "arm64" => {
                if matches!(variant.as_deref(), None | Some("8")) {
                    variant = Some("v8".to_string());
                }
                "arm64".to_string()
            }
            "armhf" => {
                variant = Some("v7".to_string());
                "arm".to_string()
            }
            "armel" => {
                variant = Some("v6".to_string());
                "arm".to_string()
            }
            "arm" => {
                variant = match variant.as_deref() {
                    None | Some("7") => Some("v7".to_string()),
                    Some("5") => Some("v5".to_string()),
                    Some("6") => Some("v6".to_string()),
                    Some("8") => Some("v8".to_string()),
                    Some(v) => Some(v.to_string()),
                };
                "arm".to_string()
            }
            other => other.to_string(),
        };
        Platform {
            os,
            architecture: arch,
            variant,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `/proc/cpuinfo` "CPU architecture: 7" → `v7`; what the kernel reports beats the build target.
fn arm_variant_of_host() -> String {
    let from_cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("CPU architecture"))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| {
                v.trim()
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .to_string()
            })
    });
    match from_cpuinfo.as_deref() {
        Some(v @ ("5" | "6" | "7" | "8")) => format!("v{v}"),
        _ if cfg!(target_feature = "v7") => "v7".to_string(),
        _ => "v6".to_string(),
    }
}

/// The platform an index entry declares (`unknown/unknown` for attestations, which never match).
pub fn entry_platform(entry: &ImageIndexEntry) -> Platform {
    match &entry.platform {
        Some(p) => Platform {
            os: p.os.to_string(),
            architecture: p.architecture.to_string(),
            variant: p.variant.clone(),
        },
        None => Platform::new("unknown", "unknown", None),
    }
}

/// The first entry whose normalized platform equals `want`'s. No fallbacks between ARM
/// levels: a v6 device never gets a v7 image, nor the reverse.
pub fn select<'a>(entries: &'a [ImageIndexEntry], want: &Platform) -> Option<&'a ImageIndexEntry> {
    let want = want.normalized();
    entries
        .iter()
        .find(|e| e.platform.is_some() && entry_platform(e).normalized() == want)
}

/// "linux/amd64, linux/arm/v7" for an error message.
pub fn offered(entries: &[ImageIndexEntry]) -> String {
    let list: Vec<String> = entries
        .iter()
        .map(|e| entry_platform(e).to_string())
        .collect();
    if list.is_empty() {
        "nothing (the index is empty)".to_string()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, os: &str, arch: &str, variant: Option<&str>) -> ImageIndexEntry {
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
            "size": 100,
            "platform": {"os": os, "architecture": arch, "variant": variant}
        }))
        .unwrap()
    }

    fn docker_like_index() -> Vec<ImageIndexEntry> {
        vec![
            entry(1, "linux", "amd64", None),
            entry(2, "linux", "arm", Some("v5")),
            entry(3, "linux", "arm", Some("v6")),
            entry(4, "linux", "arm", Some("v7")),
            entry(5, "linux", "arm64", Some("v8")),
            entry(6, "unknown", "unknown", None),
        ]
    }

    fn pick(entries: &[ImageIndexEntry], p: Platform) -> Option<String> {
        select(entries, &p).map(|e| e.digest[7..9].to_string())
    }

    #[test]
    fn each_arm_level_gets_its_own_image() {
        let idx = docker_like_index();
        assert_eq!(
            pick(&idx, Platform::new("linux", "amd64", None)),
            Some("01".into())
        );
        assert_eq!(
            pick(&idx, Platform::new("linux", "arm", Some("v6"))),
            Some("03".into())
        );
        assert_eq!(
            pick(&idx, Platform::new("linux", "arm", Some("v7"))),
            Some("04".into())
        );
        assert_eq!(
            pick(&idx, Platform::new("linux", "arm64", None)),
            Some("05".into())
        );
        assert_eq!(
            pick(&idx, Platform::new("linux", "aarch64", Some("v8"))),
            Some("05".into())
        );
        assert_eq!(
            pick(&idx, Platform::new("linux", "x86_64", None)),
            Some("01".into())
        );
    }

    #[test]
    fn arm_levels_never_mix() {
        // Only v7 offered: a v6 device must not get it, nor a v8 (32-bit) one.
        let only_v7 = vec![entry(4, "linux", "arm", Some("v7"))];
        assert_eq!(
            pick(&only_v7, Platform::new("linux", "arm", Some("v6"))),
            None
        );
        assert_eq!(
            pick(&only_v7, Platform::new("linux", "arm", Some("v8"))),
            None
        );
        // Only v6 offered: a v7 device does not get it either.
        let only_v6 = vec![entry(3, "linux", "arm", Some("v6"))];
        assert_eq!(
            pick(&only_v6, Platform::new("linux", "arm", Some("v7"))),
            None
        );
        // arm64 is never served a 32-bit arm image, and the reverse.
        assert_eq!(
            pick(&only_v7, Platform::new("linux", "arm64", Some("v8"))),
            None
        );
        let only_arm64 = vec![entry(5, "linux", "arm64", None)];
        assert_eq!(
            pick(&only_arm64, Platform::new("linux", "arm", Some("v8"))),
            None
        );
        // An arm entry without a variant is v7 (as Docker and containerd read it).
        let bare_arm = vec![entry(7, "linux", "arm", None)];
        assert_eq!(
            pick(&bare_arm, Platform::new("linux", "arm", Some("v7"))),
            Some("07".into())
        );
        assert_eq!(
            pick(&bare_arm, Platform::new("linux", "arm", Some("v6"))),
            None
        );
    }

    #[test]
    fn other_os_and_attestations_never_match() {
        let idx = vec![
            entry(1, "windows", "amd64", None),
            entry(6, "unknown", "unknown", None),
        ];
        assert_eq!(pick(&idx, Platform::new("linux", "amd64", None)), None);
        assert_eq!(offered(&idx), "windows/amd64, unknown/unknown");
        assert_eq!(offered(&docker_like_index()), "linux/amd64, linux/arm/v5, linux/arm/v6, linux/arm/v7, linux/arm64/v8, unknown/unknown");
    }

    #[test]
    fn host_platform_is_normalized() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert_eq!(host, host.normalized());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }
}
