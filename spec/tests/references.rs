//! Checks across objects: references, dependsOn cycles, host port conflicts.

use std::path::PathBuf;

use berth_spec::{load_files, LoadResult};

fn load(files: &[(&str, &str)]) -> LoadResult {
    load_files(
        files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec()))
            .collect(),
    )
}

fn problems(r: &LoadResult) -> Vec<String> {
    r.problems.iter().map(|p| p.to_string()).collect()
}

fn container(name: &str, extra: &str) -> String {
    format!("apiVersion: berth/v1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: busybox:1.36\n{extra}")
}

#[test]
fn networks_and_volumes_must_exist() {
    let web = container(
        "web",
        "  networks:\n    - default\n    - front\n  mounts:\n    - {volume: data, path: /data}\n",
    );
    let r = load(&[("web.yaml", &web)]);
    assert_eq!(
        problems(&r),
        [
            "web.yaml:8:7: Container/web: network `front` does not exist (hint: define a Network named front, or use the built-in network `default`)",
            "web.yaml:10:16: Container/web: volume `data` does not exist (hint: define a Volume named data)",
        ]
    );
    let defs = "apiVersion: berth/v1\nkind: Network\nmetadata: {name: front}\n---\napiVersion: berth/v1\nkind: Volume\nmetadata: {name: data}\n";
    let r = load(&[("defs.yaml", defs), ("web.yaml", &web)]);
    assert_eq!(problems(&r), Vec::<String>::new());
    assert_eq!(r.objects.len(), 3);
}

#[test]
fn a_reference_to_an_object_of_an_invalid_file_still_holds() {
    // The network's file is broken, so the agent keeps its last good version; the
    // container's file is not failed for it.
    let net =
        "apiVersion: berth/v1\nkind: Network\nmetadata: {name: front}\nspec: {drivr: bridge}\n";
    let web = container("web", "  networks: [front]\n");
    let r = load(&[("net.yaml", net), ("web.yaml", &web)]);
    assert_eq!(
        problems(&r),
        ["net.yaml:4:8: Network/front: unknown field `spec.drivr` (hint: did you mean `driver`?)"]
    );
    assert_eq!(r.objects.len(), 1);
}

#[test]
fn depends_on_targets_exist_and_have_no_cycle() {
    let a = container("a", "  dependsOn: [{name: b}]\n");
    let b = container("b", "  dependsOn:\n    - name: c\n");
    let c = container("c", "  dependsOn: [{name: a}, {name: ghost}]\n");
    let r = load(&[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", &c)]);
    assert_eq!(
        problems(&r),
        [
            "a.yaml:6:3: Container/a: dependsOn cycle: a → b → c → a (hint: remove one of these dependencies)",
            "b.yaml:6:3: Container/b: dependsOn cycle: a → b → c → a (hint: remove one of these dependencies)",
            "c.yaml:6:3: Container/c: dependsOn cycle: a → b → c → a (hint: remove one of these dependencies)",
            "c.yaml:6:33: Container/c: dependsOn names `ghost`, which does not exist (hint: define a Container named ghost or remove it from dependsOn)",
        ]
    );
    let a = container("a", "  dependsOn: [{name: b, condition: Healthy}]\n");
    let b = container("b", "");
    let r = load(&[("a.yaml", &a), ("b.yaml", &b)]);
    assert_eq!(
        problems(&r),
        ["a.yaml:6:22: Container/a: dependsOn waits for `b` to be Healthy, but it has no healthcheck (hint: add a healthcheck to b, or use condition: Started)"]
    );
    let b = container("b", "  healthcheck: {tcp: {port: 80}}\n");
    assert_eq!(
        problems(&load(&[("a.yaml", &a), ("b.yaml", &b)])),
        Vec::<String>::new()
    );
}

#[test]
fn two_containers_never_publish_the_same_host_port() {
    let a = container("a", "  ports:\n    - {containerPort: 80, hostPort: 8080}\n");
    let b = container(
        "b",
        "  ports:\n    - {containerPort: 81, hostPort: 8080, hostIP: 127.0.0.1}\n    - {containerPort: 53, hostPort: 8080, protocol: udp}\n",
    );
    let r = load(&[("a.yaml", &a), ("b.yaml", &b)]);
    assert_eq!(
        problems(&r),
        [
            "a.yaml:7:37: Container/a: host port 8080/tcp on 0.0.0.0 is also published by Container/b on 127.0.0.1 (b.yaml:1:1) (hint: pick another hostPort or hostIP)",
            "b.yaml:7:37: Container/b: host port 8080/tcp on 127.0.0.1 is also published by Container/a on 0.0.0.0 (a.yaml:1:1) (hint: pick another hostPort or hostIP)",
        ]
    );
    let c = container(
        "c",
        "  ports:\n    - {containerPort: 80, hostPort: 9000}\n    - {containerPort: 81, hostPort: 9000}\n",
    );
    assert_eq!(
        problems(&load(&[("c.yaml", &c)])),
        ["c.yaml:7:37: Container/c: host port 9000/tcp is published twice (0.0.0.0 and 0.0.0.0) (hint: publish each host port once)"]
    );
}
