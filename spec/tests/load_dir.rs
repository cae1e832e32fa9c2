//! Loading whole manifest directories through the public API.

use std::fs;
use std::path::{Path, PathBuf};

use berth_spec::{load_dir, Kind, LoadResult, Object, ObjectRef};

const WEB: &str = "apiVersion: berth/v1
kind: Container
metadata: {name: web}
spec:
  image: docker.io/library/nginx:1.27
  args: [-g, daemon off;]
  resources: {memory: 64Mi, cpus: 0.5}
";

const DATA: &str = "apiVersion: berth/v1
kind: Volume
metadata: {name: data}
";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

fn problems(r: &LoadResult) -> Vec<String> {
    r.problems.iter().map(|p| p.to_string()).collect()
}

fn names(r: &LoadResult) -> Vec<String> {
    r.objects
        .iter()
        .map(|l| l.object.object_ref().to_string())
        .collect()
}

#[test]
fn reads_yaml_files_in_lexical_order_with_many_documents() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "b.yml", DATA);
    write(
        t.path(),
        "a.yaml",
        &format!("{WEB}---\n{}", DATA.replace("name: data", "name: logs")),
    );
    let r = load_dir(t.path());
    assert_eq!(problems(&r), Vec::<String>::new());
    assert_eq!(names(&r), ["Container/web", "Volume/logs", "Volume/data"]);
    let files: Vec<&Path> = r.files.iter().map(|f| f.path.as_path()).collect();
    assert_eq!(files, [t.path().join("a.yaml"), t.path().join("b.yml")]);
    let web = &r.objects[0];
    assert_eq!(web.source.file, t.path().join("a.yaml"));
    assert_eq!((web.source.line, web.source.column), (1, 1));
    assert_eq!(r.objects[1].source.line, 9);
    let Object::Container(c) = &web.object else {
        panic!("not a container: {:?}", web.object)
    };
    assert_eq!(c.spec.resources.memory.unwrap().bytes(), 64 << 20);
    assert_eq!(c.spec.resources.cpus.unwrap().millis(), 500);
    assert_eq!(c.spec.stop_signal.number(), 15);
    assert_eq!(
        c.spec.stop_timeout.get(),
        std::time::Duration::from_secs(10)
    );
    assert!(
        web.hash.starts_with("sha256:") && web.hash.len() == 71,
        "{}",
        web.hash
    );
}

#[test]
fn ignores_dot_files_backups_and_other_extensions() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "web.yaml", WEB);
    for junk in [
        ".web.yaml",
        ".web.yaml.swp",
        "web.yaml~",
        "web.yaml.bak",
        "web.yaml.tmp",
        "#web.yaml#",
        "notes.txt",
        "..2024_01_01.yaml",
    ] {
        write(t.path(), junk, "this: [is not: valid");
    }
    fs::create_dir(t.path().join("sub.yaml")).unwrap();
    let r = load_dir(t.path());
    assert_eq!(problems(&r), Vec::<String>::new());
    assert_eq!(names(&r), ["Container/web"]);
    assert_eq!(r.files.len(), 1);
}

#[test]
fn a_file_with_a_problem_contributes_no_objects() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "good.yaml", DATA);
    let bad = write(
        t.path(),
        "bad.yaml",
        &format!(
            "{}---\n{WEB}  imagePullpolicy: Always\n",
            DATA.replace("name: data", "name: logs")
        ),
    );
    let r = load_dir(t.path());
    assert_eq!(names(&r), ["Volume/data"]);
    let want = format!(
        "{}:12:3: Container/web: unknown field `spec.imagePullpolicy` (hint: did you mean `imagePullPolicy`?)",
        bad.display()
    );
    assert_eq!(problems(&r), [want.as_str()]);
    let report = &r.files[0];
    assert_eq!(report.path, bad);
    assert_eq!(
        report.objects,
        [
            ObjectRef::new(Kind::Volume, "logs"),
            ObjectRef::new(Kind::Container, "web")
        ]
    );
    assert_eq!(report.error.as_deref(), Some(want.as_str()));
    assert_eq!(r.files[1].error, None);
    assert_eq!(r.files[1].objects, [ObjectRef::new(Kind::Volume, "data")]);
}

#[test]
fn all_problems_of_all_files_at_once() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "a.yaml", &WEB.replace("berth/v1", "berth/v2"));
    write(
        t.path(),
        "b.yaml",
        &WEB.replace("kind: Container", "kind: Pod")
            .replace("web", "b"),
    );
    write(
        t.path(),
        "c.yaml",
        &WEB.replace("{name: web}", "{name: -c}"),
    );
    let r = load_dir(t.path());
    let d = t.path().display();
    assert_eq!(
        problems(&r),
        [
            format!("{d}/a.yaml:1:1: Container/web: unsupported apiVersion `berth/v2` (hint: berth reads apiVersion: berth/v1)"),
            format!("{d}/b.yaml:2:1: unknown kind `Pod` (hint: write one of Container, Network, Volume)"),
            format!("{d}/c.yaml:3:18: Container/-c: metadata.name: name `-c` starts or ends with '-' (hint: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"),
        ]
    );
    assert!(r.objects.is_empty());
}

#[test]
fn duplicates_are_errors_on_both_places() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "a.yaml", WEB);
    write(t.path(), "b.yaml", &format!("{DATA}---\n{WEB}"));
    let r = load_dir(t.path());
    let d = t.path().display();
    assert_eq!(
        problems(&r),
        [
            format!("{d}/a.yaml:1:1: Container/web: Container/web is defined more than once, also at {d}/b.yaml:5:1 (hint: a kind/name pair is unique across the directory; rename or remove all but one)"),
            format!("{d}/b.yaml:5:1: Container/web: Container/web is defined more than once, also at {d}/a.yaml:1:1 (hint: a kind/name pair is unique across the directory; rename or remove all but one)"),
        ]
    );
    // Neither wins; the volume in b.yaml waits with its file.
    assert!(r.objects.is_empty());
    // The same name in another kind is fine.
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "a.yaml",
        &format!("{DATA}---\n{}", DATA.replace("Volume", "Network")),
    );
    assert_eq!(problems(&load_dir(t.path())), Vec::<String>::new());
}

#[test]
fn missing_dir_is_a_problem_and_empty_dir_is_not() {
    let t = tempfile::tempdir().unwrap();
    let r = load_dir(t.path());
    assert!(r.problems.is_empty() && r.files.is_empty() && r.objects.is_empty());
    let missing = t.path().join("nope");
    let r = load_dir(&missing);
    assert_eq!(
        problems(&r),
        [format!(
            "{}: manifest directory does not exist (hint: create it, or point berth at the directory that holds the manifests)",
            missing.display()
        )]
    );
    let file = write(t.path(), "plain", "x");
    let r = load_dir(&file);
    assert_eq!(r.problems.len(), 1);
    assert_eq!(
        r.problems[0].message,
        "manifest directory is not a directory"
    );
}

#[test]
fn empty_and_comment_only_files_are_fine() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "a.yaml", "");
    write(t.path(), "b.yaml", "# nothing yet\n---\n");
    let r = load_dir(t.path());
    assert_eq!(problems(&r), Vec::<String>::new());
    assert_eq!(r.files.len(), 2);
    assert!(r
        .files
        .iter()
        .all(|f| f.objects.is_empty() && f.error.is_none()));
}

#[test]
fn hash_ignores_format_order_comments_and_file() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "a.yaml", WEB);
    let first = load_dir(t.path()).objects[0].hash.clone();
    let reordered = "# the web server
kind: \"Container\"
spec:
  resources:
    cpus: 500m
    memory: 67108864
  args:
    - '-g'
    - \"daemon off;\"
  image: 'docker.io/library/nginx:1.27'
  restartPolicy: Always   # the default, written out
metadata:
  name: web
apiVersion: berth/v1
";
    let t2 = tempfile::tempdir().unwrap();
    write(
        t2.path(),
        "other-name.yml",
        &format!("{DATA}---\n{reordered}"),
    );
    let r = load_dir(t2.path());
    assert_eq!(problems(&r), Vec::<String>::new());
    assert_eq!(r.objects[1].hash, first);
    // A real change changes it.
    write(
        t.path(),
        "a.yaml",
        &WEB.replace("daemon off;", "daemon on;"),
    );
    assert_ne!(load_dir(t.path()).objects[0].hash, first);
}

#[test]
fn env_files_are_part_of_the_hash_and_must_exist() {
    let t = tempfile::tempdir().unwrap();
    let env = t.path().join("web.env");
    let manifests = t.path().join("m");
    fs::create_dir(&manifests).unwrap();
    let text = format!("{WEB}  envFiles:\n    - {}\n", env.display());
    let file = write(&manifests, "web.yaml", &text);
    let r = load_dir(&manifests);
    assert_eq!(
        problems(&r),
        [format!(
            "{}:9:7: Container/web: env file `{}`: cannot read file: No such file or directory (os error 2) (hint: create the file or remove it from envFiles)",
            file.display(),
            env.display()
        )]
    );
    assert!(r.objects.is_empty());
    fs::write(&env, "A=1\n").unwrap();
    let one = load_dir(&manifests).objects[0].hash.clone();
    fs::write(&env, "A=2\n").unwrap();
    let two = load_dir(&manifests).objects[0].hash.clone();
    assert_ne!(one, two);
    fs::write(&env, "A=1\n").unwrap();
    assert_eq!(load_dir(&manifests).objects[0].hash, one);
}

#[test]
fn oversized_and_non_utf8_files_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let big = write(
        t.path(),
        "big.yaml",
        &format!("# {}\n", "x".repeat(1 << 20)),
    );
    let mut bytes = b"apiVersion: berth/v1\nkind: Volume\nmetadata: {name: caf".to_vec();
    bytes.extend_from_slice(&[0xe9, b'}', b'\n']);
    let latin1 = t.path().join("latin1.yaml");
    fs::write(&latin1, bytes).unwrap();
    let r = load_dir(t.path());
    assert_eq!(
        problems(&r),
        [
            format!("{}: file is larger than 1024 KiB (hint: split it into several files)", big.display()),
            format!(
                "{}:3:21: file is not valid UTF-8 (byte 0xe9 at offset 54) (hint: save the file as UTF-8)",
                latin1.display()
            ),
        ]
    );
}

#[test]
fn a_symlinked_dir_is_read_through_one_resolved_path() {
    let t = tempfile::tempdir().unwrap();
    // git-sync layout: root/current -> rev-1
    let rev1 = t.path().join("rev-1");
    fs::create_dir(&rev1).unwrap();
    write(&rev1, "web.yaml", WEB);
    let current = t.path().join("current");
    std::os::unix::fs::symlink("rev-1", &current).unwrap();
    let r = load_dir(&current);
    assert_eq!(names(&r), ["Container/web"]);
    // Reported paths keep the directory as the operator named it.
    assert_eq!(r.files[0].path, current.join("web.yaml"));
}

#[test]
fn configmap_data_layout_is_one_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("manifests");
    let v1 = dir.join("..2024_01_01_00_00_00.1");
    fs::create_dir_all(&v1).unwrap();
    write(&v1, "web.yaml", WEB);
    std::os::unix::fs::symlink("..2024_01_01_00_00_00.1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/web.yaml", dir.join("web.yaml")).unwrap();
    let r = load_dir(&dir);
    assert_eq!(problems(&r), Vec::<String>::new());
    assert_eq!(names(&r), ["Container/web"]);
    assert_eq!(r.files[0].path, dir.join("web.yaml"));
    // Swap to a version with a second file, as kubelet does: new dir, then rename ..data.
    let v2 = dir.join("..2024_01_02_00_00_00.2");
    fs::create_dir_all(&v2).unwrap();
    write(&v2, "web.yaml", WEB);
    write(&v2, "data.yaml", DATA);
    std::os::unix::fs::symlink("..2024_01_02_00_00_00.2", dir.join("..data_tmp")).unwrap();
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    // data.yaml is read from the snapshot even before its top-level link exists.
    let r = load_dir(&dir);
    assert_eq!(names(&r), ["Volume/data", "Container/web"]);
}
