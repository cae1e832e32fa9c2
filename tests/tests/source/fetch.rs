//! The fetch process alone, against each kind of server.

use std::process::Command;

use berth_tests::git::{run, Server};

use super::{fetch, files_under, source, World};

#[test]
fn a_signed_commit_checks_out_the_configured_paths_and_regular_files_only() {
    let w = World::new();
    let rev = w.publish(
        &[
            ("common/base.yaml", Some("# common\n")),
            ("common/env/app.env", Some("A=1\n")),
            ("hosts/edge-1/app.yaml", Some("# edge-1\n")),
            ("hosts/edge-2/app.yaml", Some("# edge-2\n")),
            ("README.md", Some("fleet\n")),
        ],
        "fleet",
    );
    // A symlink in the repository could point anywhere on the host: it is left out.
    std::os::unix::fs::symlink("/etc/shadow", w.repo.dir.join("common/shadow.yaml")).unwrap();
    let rev = {
        let r = w.publish(&[], "a link");
        assert_ne!(r, rev);
        r
    };
    let url = format!("file://{}", w.bare.display());
    let src = source(
        &url,
        "main",
        &["common", "hosts/edge-1"],
        Some(&w.allowed_signers),
    );
    let got = fetch(w.path(), &src, None);
    assert_eq!(got["outcome"], "fetched", "{got}");
    assert_eq!(got["revision"], rev);
    assert!(
        got["signer"]
            .as_str()
            .unwrap()
            .starts_with("admin@example.org (SHA256:"),
        "{got}"
    );
    let snapshot = w.path().join("snapshots").join(&rev);
    assert_eq!(got["snapshot"], snapshot.display().to_string());
    assert_eq!(
        files_under(&snapshot),
        [
            "common/base.yaml",
            "common/env/app.env",
            "hosts/edge-1/app.yaml"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(snapshot.join("hosts/edge-1/app.yaml")).unwrap(),
        "# edge-1\n"
    );

    // The ref still names the applied revision: nothing is checked out again.
    let again = fetch(w.path(), &src, Some(&rev));
    assert_eq!(
        again,
        serde_json::json!({"outcome": "unchanged", "revision": rev})
    );

    // A configured path the revision lacks refuses the revision.
    let missing = source(&url, "main", &["common", "hosts/edge-9"], None);
    let got = fetch(w.path(), &missing, None);
    assert_eq!(got["outcome"], "invalid", "{got}");
    assert!(
        got["message"]
            .as_str()
            .unwrap()
            .contains("path \"hosts/edge-9\" is not in revision"),
        "{got}"
    );
}

#[test]
fn unsigned_foreign_and_tampered_commits_are_refused() {
    let w = World::new();
    let url = format!("file://{}", w.bare.display());
    let src = source(&url, "main", &["."], Some(&w.allowed_signers));

    w.repo
        .commit(&[("a.yaml", Some("# a\n"))], None, "unsigned")
        .unwrap();
    w.repo.push(&w.bare, "main:main").unwrap();
    let got = fetch(w.path(), &src, None);
    assert_eq!(got["outcome"], "unverified", "{got}");
    assert!(
        got["message"]
            .as_str()
            .unwrap()
            .contains("the commit is not signed"),
        "{got}"
    );

    let foreign = w
        .repo
        .commit(&[("a.yaml", Some("# b\n"))], Some(&w.stranger), "foreign")
        .unwrap();
    w.repo.push(&w.bare, "main:main").unwrap();
    let got = fetch(w.path(), &src, None);
    assert_eq!(got["outcome"], "unverified", "{got}");
    assert_eq!(got["revision"], foreign);
    assert!(
        got["message"]
            .as_str()
            .unwrap()
            .contains("which is not in the allowed signers"),
        "{got}"
    );

    // A signed commit whose content was changed afterwards (same signature, new message).
    let good = w.publish(&[("a.yaml", Some("# c\n"))], "good");
    let object = w.repo.git(&["cat-file", "commit", &good]).unwrap();
    assert!(
        object.contains("gpgsig -----BEGIN SSH SIGNATURE-----"),
        "{object}"
    );
    let forged = object.replace("good", "evil");
    let path = w.path().join("forged");
    std::fs::write(&path, forged).unwrap();
    let forged_id = w
        .repo
        .git(&[
            "hash-object",
            "-t",
            "commit",
            "-w",
            &path.display().to_string(),
        ])
        .unwrap()
        .trim()
        .to_string();
    w.repo
        .git(&["update-ref", "refs/heads/main", &forged_id])
        .unwrap();
    w.repo.push(&w.bare, "main:main").unwrap();
    let got = fetch(w.path(), &src, None);
    assert_eq!(got["outcome"], "unverified", "{got}");
    assert_eq!(got["revision"], forged_id);
    assert!(
        got["message"].as_str().unwrap().contains("is not valid"),
        "{got}"
    );
    assert!(
        !w.path().join("snapshots").join(&forged_id).exists(),
        "a refused revision is not checked out"
    );
}

#[test]
fn git_daemon_follows_force_pushes_tags_and_commit_ids_and_reports_a_deleted_branch() {
    let w = World::new();
    let daemon = Server::git_daemon(&w.path().join("srv"), w.path()).unwrap();
    let url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);
    let src = source(&url, "main", &["."], Some(&w.allowed_signers));

    let first = w.publish(&[("a.yaml", Some("# one\n"))], "one");
    let got = fetch(w.path(), &src, None);
    assert_eq!(
        (got["outcome"].as_str(), got["revision"].as_str()),
        (Some("fetched"), Some(first.as_str())),
        "{got}"
    );
    let unchanged = fetch(w.path(), &src, Some(&first));
    assert_eq!(unchanged["outcome"], "unchanged", "{unchanged}");

    // History rewritten: an unrelated signed commit force-pushed over main.
    w.repo
        .git(&["checkout", "-q", "--orphan", "rewritten"])
        .unwrap();
    let rewritten = w
        .repo
        .commit(
            &[("a.yaml", Some("# rewritten\n"))],
            Some(&w.admin),
            "rewritten",
        )
        .unwrap();
    w.repo.push(&w.bare, "rewritten:main").unwrap();
    let got = fetch(w.path(), &src, Some(&first));
    assert_eq!(
        (got["outcome"].as_str(), got["revision"].as_str()),
        (Some("fetched"), Some(rewritten.as_str())),
        "{got}"
    );
    let snapshot = std::path::PathBuf::from(got["snapshot"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(snapshot.join("a.yaml")).unwrap(),
        "# rewritten\n"
    );

    // An annotated tag names its commit; so does a commit id.
    w.repo
        .git(&["tag", "-a", "v1", "-m", "release 1", &rewritten])
        .unwrap();
    w.repo.push(&w.bare, "refs/tags/v1:refs/tags/v1").unwrap();
    let got = fetch(w.path(), &source(&url, "v1", &["."], None), None);
    assert_eq!(
        (got["outcome"].as_str(), got["revision"].as_str()),
        (Some("fetched"), Some(rewritten.as_str())),
        "{got}"
    );
    let got = fetch(w.path(), &source(&url, &rewritten, &["."], None), None);
    assert_eq!(
        (got["outcome"].as_str(), got["revision"].as_str()),
        (Some("fetched"), Some(rewritten.as_str())),
        "{got}"
    );

    // The branch deleted on the server.
    run(Command::new("git")
        .arg("-C")
        .arg(&w.bare)
        .args(["update-ref", "-d", "refs/heads/main"]))
    .unwrap();
    let got = fetch(w.path(), &src, Some(&rewritten));
    assert_eq!(got["outcome"], "fetchFailed", "{got}");
    assert!(
        got["message"]
            .as_str()
            .unwrap()
            .contains("no branch or tag \"main\""),
        "{got}"
    );
}

#[test]
fn smart_https_with_basic_auth_and_an_unchanged_ref_costs_no_pack() {
    let w = World::new();
    let http = Server::git_https(&w.path().join("srv"), w.path(), "fleet", "s3cret").unwrap();
    let url = format!("https://127.0.0.1:{}/git/fleet.git", http.port);
    let rev = w.publish(&[("a.yaml", Some("# a\n"))], "one");
    let password = w.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let mut src = source(&url, "main", &["."], Some(&w.allowed_signers));
    // The server's CA is not the system's: without caFile the server is not trusted.
    src["auth"] = serde_json::json!({"username": "fleet", "passwordFile": password});
    let got = fetch(w.path(), &src, None);
    assert_eq!(got["outcome"], "fetchFailed", "{got}");
    assert!(
        got["message"].as_str().unwrap().contains("certificate"),
        "{got}"
    );
    src["auth"]["caFile"] = serde_json::json!(w.path().join("ca.pem"));
    let got = fetch(w.path(), &src, None);
    assert_eq!(
        (got["outcome"].as_str(), got["revision"].as_str()),
        (Some("fetched"), Some(rev.as_str())),
        "{got}"
    );
    let before = Server::requests(w.path());
    assert!(
        before
            .iter()
            .any(|l| l.starts_with("POST /fleet.git/git-upload-pack")),
        "{before:#?}"
    );

    let got = fetch(w.path(), &src, Some(&rev));
    assert_eq!(got["outcome"], "unchanged", "{got}");
    let after = Server::requests(w.path());
    let new: Vec<&String> = after[before.len()..].iter().collect();
    // The ref listing only (a GET of info/refs, with protocol v2 a POST of ls-refs); no fetch.
    assert!(
        !new.is_empty() && new.len() <= 2,
        "an unchanged ref took {} requests: {new:#?}",
        new.len()
    );

    std::fs::write(&password, "wrong\n").unwrap();
    let got = fetch(w.path(), &src, None);
    assert_eq!(got["outcome"], "fetchFailed", "{got}");
    assert!(got["message"].as_str().unwrap().contains("401"), "{got}");
    assert_eq!(
        Server::requests(w.path()).len(),
        after.len(),
        "the wrong password reached git"
    );
}

#[test]
fn ssh_with_a_key_and_known_hosts_and_a_host_key_that_does_not_match() {
    let w = World::new();
    let client = berth_tests::git::SshKey::generate(w.path(), "client").unwrap();
    let (sshd, known_hosts) = Server::sshd(w.path(), &client).unwrap();
    let url = format!("ssh://root@127.0.0.1:{}{}", sshd.port, w.bare.display());
    let rev = w.publish(&[("a.yaml", Some("# a\n"))], "one");
    let mut src = source(&url, "main", &["."], Some(&w.allowed_signers));
    src["auth"] = serde_json::json!({"sshKeyFile": client.private, "knownHostsFile": known_hosts});
    let got = fetch(w.path(), &src, None);
    assert_eq!(
        (got["outcome"].as_str(), got["revision"].as_str()),
        (Some("fetched"), Some(rev.as_str())),
        "{got}\nsshd log:\n{}",
        std::fs::read_to_string(&sshd.log).unwrap_or_default()
    );

    // A known_hosts entry with another key: the connection is refused, never trusted.
    let other = berth_tests::git::SshKey::generate(w.path(), "impostor").unwrap();
    let key: Vec<&str> = other.public.split_whitespace().take(2).collect();
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port, key.join(" ")),
    )
    .unwrap();
    let got = fetch(w.path(), &src, None);
    assert_eq!(got["outcome"], "fetchFailed", "{got}");
}

#[test]
fn a_huge_checkout_and_a_corrupt_repository_fail_with_their_reason() {
    let w = World::new();
    let url = format!("file://{}", w.bare.display());
    let daemon = Server::git_daemon(&w.path().join("srv"), w.path()).unwrap();
    let git_url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);

    // 70 MiB of incompressible data in the manifest path.
    let mut big = vec![0u8; 70 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::create_dir_all(w.repo.dir.join("m")).unwrap();
    std::fs::write(w.repo.dir.join("m/blob.bin"), &big).unwrap();
    let huge = w.publish(&[("m/a.yaml", Some("# a\n"))], "huge");
    let got = fetch(w.path(), &source(&url, "main", &["m"], None), None);
    assert_eq!(
        (got["outcome"].as_str(), got["revision"].as_str()),
        (Some("invalid"), Some(huge.as_str())),
        "{got}"
    );
    assert!(
        got["message"]
            .as_str()
            .unwrap()
            .contains("more than 10000 files or 64 MiB"),
        "{got}"
    );
    assert!(
        std::fs::read_dir(w.path().join("snapshots"))
            .unwrap()
            .next()
            .is_none(),
        "a refused checkout leaves nothing behind"
    );

    // Corrupt the served repository: every loose object truncated.
    let small = w.publish(&[("m/blob.bin", None)], "small");
    let objects = w.bare.join("objects");
    let mut corrupted = 0;
    for dir in std::fs::read_dir(&objects).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if name.len() != 2 {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let mut perm = std::fs::metadata(f.path()).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
            std::fs::set_permissions(f.path(), perm).unwrap();
            std::fs::write(f.path(), b"corrupt").unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0, "the test corrupted no object");
    let got = fetch(w.path(), &source(&git_url, "main", &["m"], None), None);
    assert_eq!(got["outcome"], "fetchFailed", "{got}");
    let got = fetch(w.path(), &source(&url, "main", &["m"], None), None);
    assert_ne!(got["outcome"], "fetched", "{got}");
    let _ = small;
}
