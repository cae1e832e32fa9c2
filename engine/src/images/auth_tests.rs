//! Pulls from real registries that want credentials: Debian's docker-registry behind htpasswd
//! basic auth, and behind bearer tokens from a token service that takes basic credentials.
//! Needs root (layers keep file owners), docker-registry, htpasswd, openssl, umoci and skopeo.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::registry::TokenRequest;
use berth_tests::Registry;

use super::{AuthConfig, BasicAuth, ImageError, ImageStore, PullProgress, RegistryConfig};

const USER: &str = "berth-test-user";
const PASSWORD: &str = "pw:with:colons";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the image auth tests need root: layers keep file owners"
    );
}

fn temp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

fn no_progress() -> impl Fn(PullProgress) + Send + Sync {
    |_| {}
}

/// Build the busybox test image into an OCI layout and push it, with the registry's
/// credentials, as `library/busybox:1.36`. Returns the reference to pull.
fn push_busybox(registry: &Registry, work: &Path) -> String {
    berth_tests::require_tool("umoci", "umoci").unwrap();
    berth_tests::require_tool("skopeo", "skopeo").unwrap();
    let layout = work.join("out");
    let output = Command::new("sh")
        .arg(berth_tests::support_script("busybox-image.sh"))
        .arg(work.join("build"))
        .arg(format!("oci:{}:1.36", layout.display()))
        .output()
        .expect("run busybox-image.sh");
    assert!(
        output.status.success(),
        "busybox-image.sh into an OCI layout failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    registry
        .push(
            &format!("oci:{}:1.36", layout.display()),
            "library/busybox:1.36",
        )
        .unwrap();
    format!("{}/library/busybox:1.36", registry.host())
}

fn password_file(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join("registry-password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn basic_auth_registry_needs_and_takes_configured_credentials() {
    require_root();
    let registry = Registry::start_with_auth(USER, PASSWORD).unwrap();
    let work = temp("berth-test-auth-work-");
    let reference = push_busybox(&registry, work.path());
    let host = registry.host();

    // Anonymous: refused, with what to configure.
    let state = temp("berth-test-auth-state-");
    let store = ImageStore::open(state.path()).unwrap();
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "pull {reference}: access denied (HTTP 401; hint: the image may be private — add credentials for {host} under registries.auth or registries.dockerConfig — or the name is wrong) (registry {host})"
        )
    );
    assert!(entries(&state.path().join("content/sha256")).is_empty());

    // A wrong password: refused, naming the credentials as the suspect.
    let wrong = AuthConfig {
        auth: [(
            host.clone(),
            BasicAuth {
                username: USER.to_string(),
                password: Some("wrong".to_string()),
                password_file: None,
            },
        )]
        .into(),
        docker_config: None,
    };
    let store = ImageStore::open(state.path()).unwrap().with_auth(wrong);
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "pull {reference}: access denied (HTTP 401; hint: the registry refused the credentials configured for {host}, or they do not allow pulling this repository) (registry {host})"
        )
    );

    // The right password, from a file (with its trailing newline): pulled and unpacked.
    let right = AuthConfig {
        auth: [(
            host.clone(),
            BasicAuth {
                username: USER.to_string(),
                password: None,
                password_file: Some(password_file(work.path(), PASSWORD)),
            },
        )]
        .into(),
        docker_config: None,
    };
    right.validate().unwrap();
    let store = ImageStore::open(state.path()).unwrap().with_auth(right);
    let last = std::sync::Mutex::new(None);
    let progress = |p: PullProgress| *last.lock().unwrap() = Some(p);
    let image = store
        .pull(&reference, &RegistryConfig::default(), &progress)
        .await
        .unwrap();
    assert_eq!(image.reference, reference);
    assert_eq!(image.layers.len(), 1);
    assert!(image.layers[0].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(image.layers[0].join("etc/motd")).unwrap(),
        "hello from the berth test image\n"
    );
    let last = last.lock().unwrap().expect("progress was reported");
    assert_eq!(last.done_bytes, last.total_bytes);
    assert_eq!(
        last.downloaded_bytes, last.total_bytes,
        "everything came over the network"
    );
}

#[tokio::test]
async fn token_registry_gets_basic_credentials_from_a_docker_config_for_its_token() {
    require_root();
    let registry = Registry::start_with_token_auth(USER, PASSWORD).unwrap();
    let work = temp("berth-test-auth-work-");
    let reference = push_busybox(&registry, work.path());
    let host = registry.host();
    let pushes = registry.token_requests().len();

    // Anonymous: the token service refuses.
    let state = temp("berth-test-auth-state-");
    let store = ImageStore::open(state.path()).unwrap();
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "pull {reference}: the token service refused the request: "
        )),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "(hint: the registry wants credentials: add them for {host} under registries.auth or registries.dockerConfig) (registry {host})"
        )),
        "{err}"
    );
    let anonymous = &registry.token_requests()[pushes..];
    assert_eq!(
        anonymous,
        [TokenRequest {
            username: None,
            scopes: vec!["repository:library/busybox:pull".to_string()],
            granted: false,
        }]
    );

    // What `docker login` writes: auths.<host>.auth = base64(user:password).
    let docker_config = work.path().join("config.json");
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    };
    std::fs::write(
        &docker_config,
        serde_json::json!({ "auths": { format!("http://{host}"): { "auth": encoded } } })
            .to_string(),
    )
    .unwrap();
    let auth = AuthConfig {
        auth: Default::default(),
        docker_config: Some(docker_config),
    };
    let store = ImageStore::open(state.path()).unwrap().with_auth(auth);
    let image = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap();
    assert!(image.layers[0].join("bin/busybox").is_file());
    // The credentials went to the token service, which granted a pull token.
    let with_credentials: Vec<TokenRequest> = registry.token_requests()[pushes + 1..].to_vec();
    assert!(!with_credentials.is_empty());
    for r in &with_credentials {
        assert_eq!(
            r,
            &TokenRequest {
                username: Some(USER.to_string()),
                scopes: vec!["repository:library/busybox:pull".to_string()],
                granted: true,
            }
        );
    }
}
