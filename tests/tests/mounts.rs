//! End to end: volumes (filled from the image once, kept across recreates), host paths only
//! under allowedHostPaths, tmpfs, read-only root, Docker's masked and read-only paths, and
//! the device allow-list.

use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use berth_tests::agent::Agent;
use berth_tests::{push_busybox, Registry};

fn container(name: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sh, -c]\n  args: [\"{script}\"]\n  restartPolicy: Never\n  stopTimeout: 1s\n{extra}"
    )
}

const VOLUME: &str = "---\napiVersion: berth/v1\nkind: Volume\nmetadata:\n  name: etc\n";

fn stdout_of(agent: &Agent, name: &str) -> String {
    agent
        .get(&format!("/v1/containers/{name}/logs"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["stream"] == "stdout")
        .map(|v| v["log"].as_str().unwrap().to_string())
        .collect()
}

fn finished(agent: &Agent, name: &str) -> serde_json::Value {
    agent
        .wait_container(name, "exited", |c| {
            c["state"] == "exited" || c["state"] == "failed"
        })
        .unwrap()
}

#[test]
fn volumes_host_paths_tmpfs_and_hardening() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("config.txt"), "from the host\n").unwrap();
    let denied = tempfile::tempdir().unwrap();
    std::fs::write(denied.path().join("secret"), "no\n").unwrap();
    // A device node the test owns: /dev/full's numbers (1:7), under an allowed dir.
    let dev = host.path().join("testdev");
    nix::sys::stat::mknod(
        &dev,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 7),
    )
    .unwrap();
    let agent = Agent::start_with(
        &registry,
        &format!("allowedHostPaths: [{}]\n", host.path().display()),
    )
    .unwrap();

    // A new named volume over /etc is filled with the image's /etc, then written to.
    let vol = format!(
        "{}{VOLUME}",
        container(
            "vol",
            "cat /etc/motd; echo written > /etc/new.txt; echo ok",
            "  mounts:\n    - {volume: etc, path: /etc}\n"
        )
    );
    agent.write_manifest("vol.yaml", &vol).unwrap();
    let c = finished(&agent, "vol");
    let first_id = c["id"].as_str().unwrap().to_string();
    assert_eq!(
        (c["state"].as_str(), c["exitCode"].as_i64()),
        (Some("exited"), Some(0)),
        "{c}"
    );
    assert_eq!(
        stdout_of(&agent, "vol"),
        "hello from the berth test image\nok\n"
    );
    let data = agent.state_dir.join("volumes/etc/_data");
    assert_eq!(
        std::fs::read_to_string(data.join("motd")).unwrap(),
        "hello from the berth test image\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("new.txt")).unwrap(),
        "written\n"
    );
    // Recreated (new spec): the data is still there, and it is not filled again.
    std::fs::remove_file(data.join("motd")).unwrap();
    agent
        .write_manifest(
            "vol.yaml",
            &vol.replace("echo ok", "cat /etc/new.txt; ls /etc/motd || echo no-motd"),
        )
        .unwrap();
    let c = agent
        .wait_container("vol", "recreated and exited", |c| {
            c["state"] == "exited" && c["id"] != first_id.as_str()
        })
        .unwrap();
    assert_eq!(c["exitCode"], 0);
    let out = agent
        .wait_for("second run output", Duration::from_secs(10), |a| {
            Some(stdout_of(a, "vol")).filter(|o| o.contains("no-motd"))
        })
        .unwrap();
    assert!(
        out.contains("written\n"),
        "volume content lost on recreate: {out}"
    );

    // Host paths: allowed ones mount (read-only here), others are refused by name.
    let bind = container(
        "bind",
        "cat /cfg/config.txt; echo x > /cfg/config.txt || echo read-only",
        &format!(
            "  mounts:\n    - {{hostPath: {}, path: /cfg, readOnly: true}}\n",
            host.path().display()
        ),
    );
    agent.write_manifest("bind.yaml", &bind).unwrap();
    finished(&agent, "bind");
    assert_eq!(stdout_of(&agent, "bind"), "from the host\nread-only\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("config.txt")).unwrap(),
        "from the host\n"
    );
    let nope = container(
        "nope",
        "cat /x/secret",
        &format!(
            "  mounts:\n    - {{hostPath: {}, path: /x}}\n",
            denied.path().display()
        ),
    );
    agent.write_manifest("nope.yaml", &nope).unwrap();
    // A validation error: the file does not load, nothing of it is started.
    let c = agent
        .wait_container("nope", "refused", |c| c["state"] == "failed")
        .unwrap();
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "Container/nope: hostPath {} is not under allowedHostPaths",
            denied.path().display()
        )),
        "{msg}"
    );
    assert_eq!(
        c["id"],
        serde_json::Value::Null,
        "a refused container must never be created"
    );

    // tmpfs with a size, a read-only root, masked and read-only kernel paths.
    let hard = container(
        "hard",
        "grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4; touch /newfile || echo root-ro; touch /scratch/f && echo tmpfs-rw; \
         cat /proc/kcore | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/panic || echo procsys-ro",
        "  mounts:\n    - {tmpfs: {size: 2Mi}, path: /scratch}\n  security:\n    readOnlyRootFilesystem: true\n",
    );
    agent.write_manifest("hard.yaml", &hard).unwrap();
    finished(&agent, "hard");
    let out = stdout_of(&agent, "hard");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("tmpfs rw,nosuid,nodev") && lines[0].contains("size=2048k"),
        "{out}"
    );
    assert_eq!(
        &lines[1..],
        ["root-ro", "tmpfs-rw", "0", "0", "procsys-ro"],
        "{out}"
    );

    // Devices: the listed node appears with its numbers; an unlisted one cannot be opened.
    let devs = container(
        "devs",
        "ls -l /dev/mydev | cut -c1; stat -c '%t:%T' /dev/mydev; head -c 4 /dev/mydev | wc -c; \
         mknod /tmp/kmsg c 1 11 && (cat /tmp/kmsg || echo denied)",
        &format!(
            "  devices:\n    - {{hostPath: {}, path: /dev/mydev, permissions: r}}\n",
            dev.display()
        ),
    );
    agent.write_manifest("devs.yaml", &devs).unwrap();
    finished(&agent, "devs");
    assert!(std::fs::metadata(&dev)
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(stdout_of(&agent, "devs"), "c\n1:7\n4\ndenied\n");

    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
