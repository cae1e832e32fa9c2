//! Raw manifests: size bound, kind detection (image or index; Docker v2 schema 2 or OCI) and
//! the media types berth accepts for configs and layers.

use oci_client::manifest::{
    OciDescriptor, OciImageIndex, OciImageManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};

/// Manifests larger than this are refused before they are parsed.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Image configs larger than this are refused (they are read into memory).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// What the `Accept` header of a manifest request lists.
pub const ACCEPTED_MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

const DOCKER_SCHEMA1_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Config media types of container images (others are artifacts: Helm charts, wasm, …).
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// How a layer blob is compressed, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A parsed manifest.
#[derive(Debug)]
pub enum Manifest {
    Image(Box<OciImageManifest>),
    Index(OciImageIndex),
}

/// Parse manifest bytes. `content_type` is the HTTP `Content-Type` (or the index entry's
/// media type), used when the body has no `mediaType` field.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "is {} bytes, more than the {MAX_MANIFEST_BYTES} allowed",
            bytes.len()
        ));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<i64>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("is not valid JSON: {e}"))?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    let media_type = probe.media_type.as_deref().or(content_type);
    if probe.schema_version == Some(1)
        || media_type.is_some_and(|mt| DOCKER_SCHEMA1_TYPES.contains(&mt))
    {
        {
            return Err(
                "is Docker schema 1, which berth does not support (hint: push the image again with a current tool)"
                    .to_string(),
            );
        }
    }
    if probe.schema_version != Some(2) {
        return Err(format!(
            "has schemaVersion {:?}, only 2 is supported",
            probe.schema_version
        ));
    }
    let is_index = match media_type {
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE) | Some(IMAGE_MANIFEST_LIST_MEDIA_TYPE) => true,
        Some(OCI_IMAGE_MEDIA_TYPE) | Some(IMAGE_MANIFEST_MEDIA_TYPE) => false,
        Some(other) => return Err(format!("has unsupported media type {other:?}")),
        None => probe.manifests.is_some() && probe.layers.is_none(),
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(Manifest::Index)
            .map_err(|e| format!("is not a valid image index: {e}"))
    } else {
        serde_json::from_slice(bytes)
            .map(|m| Manifest::Image(Box::new(m)))
            .map_err(|e| format!("is not a valid image manifest: {e}"))
    }
}

/// Refuse manifests that are not container images (artifacts with other config types).
pub fn check_config_type(config: &OciDescriptor) -> Result<(), String> {
    if CONFIG_TYPES.contains(&config.media_type.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "config media type {:?} is not a container image config",
            config.media_type
        ))
    }
}

/// The compression of a layer, or why its media type is refused.
pub fn layer_compression(layer: &OciDescriptor) -> Result<Compression, String> {
    let mt = layer.media_type.as_str();
    let known_prefix = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
    ]
    .iter()
    .find_map(|p| mt.strip_prefix(p));
    match known_prefix {
        Some("") => Ok(Compression::None),
        Some("+gzip") | Some(".gzip") => Ok(Compression::Gzip),
        Some("+zstd") | Some(".zstd") => Ok(Compression::Zstd),
        _ => Err(format!("layer media type {mt:?} is not supported")),
    }
}

/// A descriptor's declared size as u64 (a negative size is refused).
pub fn declared_size(desc: &OciDescriptor) -> Result<u64, String> {
    u64::try_from(desc.size).map_err(|_| format!("declares a negative size {}", desc.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn detects_docker_and_oci_images_and_indexes() {
        let docker = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d(1), "size": 10},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d(2), "size": 20}]
        });
        match parse(docker.to_string().as_bytes(), None).unwrap() {
            Manifest::Image(m) => {
                assert_eq!(m.layers[0].digest, d(2));
                assert_eq!(layer_compression(&m.layers[0]), Ok(Compression::Gzip));
                assert_eq!(check_config_type(&m.config), Ok(()));
            }
            other => panic!("expected image, got {other:?}"),
        }
        // OCI manifest without mediaType: the Content-Type decides.
        let oci = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 10},
            "layers": []
        });
        assert!(matches!(
            parse(
                oci.to_string().as_bytes(),
                Some("application/vnd.oci.image.manifest.v1+json")
            ),
            Ok(Manifest::Image(_))
        ));
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": d(3), "size": 5, "platform": {"os": "linux", "architecture": "amd64"}}
        ]});
        match parse(index.to_string().as_bytes(), None).unwrap() {
            Manifest::Index(i) => assert_eq!(i.manifests[0].digest, d(3)),
            other => panic!("expected index, got {other:?}"),
        }
    }

    #[test]
    fn refuses_schema1_oversize_and_unknown() {
        let s1 = serde_json::json!({"schemaVersion": 1, "name": "x", "fsLayers": []});
        assert!(parse(s1.to_string().as_bytes(), None)
            .unwrap_err()
            .contains("schema 1"));
        let big = vec![b' '; (MAX_MANIFEST_BYTES + 1) as usize];
        assert_eq!(
            parse(&big, None).unwrap_err(),
            format!(
                "is {} bytes, more than the {MAX_MANIFEST_BYTES} allowed",
                MAX_MANIFEST_BYTES + 1
            )
        );
        let odd = serde_json::json!({"schemaVersion": 2, "mediaType": "application/x-other", "layers": []});
        assert_eq!(
            parse(odd.to_string().as_bytes(), None).unwrap_err(),
            "has unsupported media type \"application/x-other\""
        );
    }

    #[test]
    fn layer_media_types() {
        let desc = |mt: &str| OciDescriptor {
            media_type: mt.to_string(),
            ..Default::default()
        };
        assert_eq!(
            layer_compression(&desc("application/vnd.oci.image.layer.v1.tar")),
            Ok(Compression::None)
        );
        assert_eq!(
            layer_compression(&desc("application/vnd.oci.image.layer.v1.tar+zstd")),
            Ok(Compression::Zstd)
        );
        assert_eq!(
            layer_compression(&desc("application/vnd.docker.image.rootfs.diff.tar")),
            Ok(Compression::None)
        );
        assert!(layer_compression(&desc("application/vnd.wasm.content.layer.v1+wasm")).is_err());
        assert!(check_config_type(&desc("application/vnd.cncf.helm.config.v1+json")).is_err());
    }
}
