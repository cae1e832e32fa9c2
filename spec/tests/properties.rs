//! Property tests with a small seeded generator (deterministic, so a failure replays):
//! round-trips, hash stability under reformatting and moving objects between files, and
//! arbitrary input never panicking the loader.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_spec::{
    load_files, ByteSize, Capability, Container, ContainerSpec, Cpus, DurationSpec, Healthcheck,
    HttpProbe, Metadata, Mount, MountSource, Object, OnUnhealthy, Port, Probe, Protocol,
    RestartPolicy, Signal, TcpProbe, Tmpfs,
};
use serde_json::Value;

/// xorshift64*: enough randomness for test inputs, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn text(&mut self) -> String {
        const PIECES: [&str; 16] = [
            "a", "Z", "0", " ", ":", "#", "'", "\"", "-", "é", "\n", "{", "}", "%", "*", "&",
        ];
        (0..self.below(8)).map(|_| *self.pick(&PIECES)).collect()
    }
}

fn random_container(rng: &mut Rng, name: &str, host_port: u16) -> Object {
    let images = [
        "busybox:1.36",
        "docker.io/library/nginx:1.27",
        "localhost:5000/app",
    ];
    let mut spec = ContainerSpec::new(*rng.pick(&images));
    if rng.chance(50) {
        spec.command = Some((0..rng.below(3)).map(|_| rng.text()).collect());
    }
    if rng.chance(50) {
        spec.args = Some((0..rng.below(4)).map(|_| rng.text()).collect());
    }
    for i in 0..rng.below(4) {
        spec.env.insert(format!("VAR_{i}"), rng.text());
    }
    if rng.chance(50) {
        spec.working_dir = Some("/srv/app".into());
    }
    if rng.chance(40) {
        spec.ports.push(Port {
            container_port: 80,
            host_port: Some(host_port),
            protocol: *rng.pick(&[Protocol::Tcp, Protocol::Udp]),
            host_ip: "0.0.0.0".parse().unwrap(),
        });
    }
    if rng.chance(40) {
        spec.mounts.push(Mount {
            path: "/tmp".into(),
            read_only: rng.chance(50),
            source: MountSource::Tmpfs(Tmpfs {
                size: rng
                    .chance(50)
                    .then(|| ByteSize::from_bytes(rng.below(1 << 30))),
            }),
        });
    }
    if rng.chance(40) {
        spec.mounts.push(Mount {
            path: "/etc/ssl/certs".into(),
            read_only: true,
            source: MountSource::HostPath("/etc/ssl/certs".into()),
        });
    }
    spec.resources.memory = rng
        .chance(60)
        .then(|| ByteSize::from_bytes(rng.below(1 << 34)));
    spec.resources.cpus = rng
        .chance(60)
        .then(|| Cpus::from_millis(1 + rng.below(8000)).unwrap());
    spec.resources.pids = rng.chance(30).then(|| rng.below(10_000));
    spec.restart_policy = *rng.pick(&[
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::Never,
    ]);
    spec.stop_signal = Signal::from_number(1 + rng.below(31) as i32).unwrap();
    spec.stop_timeout = DurationSpec::from_millis(rng.below(10_000_000));
    if rng.chance(40) {
        let interval = DurationSpec::from_millis(1000 + rng.below(60_000));
        spec.healthcheck = Some(Healthcheck {
            probe: match rng.below(3) {
                0 => Probe::Exec(vec!["true".into(), rng.text()]),
                1 => Probe::Http(HttpProbe {
                    port: 8080,
                    path: "/healthz".into(),
                }),
                _ => Probe::Tcp(TcpProbe { port: 9000 }),
            },
            interval,
            timeout: DurationSpec::from_millis(1 + rng.below(interval.millis())),
            retries: 1 + rng.below(5) as u32,
            start_period: DurationSpec::from_millis(rng.below(100_000)),
            start_interval: DurationSpec::from_millis(100 + rng.below(10_000)),
            on_unhealthy: *rng.pick(&[OnUnhealthy::Restart, OnUnhealthy::None, OnUnhealthy::Stop]),
        });
    }
    if rng.chance(30) {
        spec.security
            .capabilities
            .add
            .push(Capability::Number(rng.below(41) as u8));
        spec.security.capabilities.drop.push(Capability::All);
    }
    let mut metadata = Metadata::named(name);
    if rng.chance(50) {
        metadata.labels = BTreeMap::from([("app".to_string(), rng.text())]);
    }
    Object::Container(Container { metadata, spec })
}

fn load_texts(files: &[(String, String)]) -> berth_spec::LoadResult {
    load_files(
        files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.as_bytes().to_vec()))
            .collect(),
    )
}

#[test]
fn objects_round_trip_through_yaml() {
    let mut rng = Rng(0x5eed_0001);
    for case in 0..200 {
        let object = random_container(&mut rng, &format!("c{case}"), 8000);
        let yaml = object.to_yaml();
        let r = load_texts(&[("a.yaml".into(), yaml.clone())]);
        assert_eq!(r.problems, Vec::new(), "case {case}:\n{yaml}");
        assert_eq!(r.objects[0].object, object, "case {case}:\n{yaml}");
        // Canonical form is a fixed point.
        assert_eq!(r.objects[0].object.to_yaml(), yaml);
    }
}

/// Writes a JSON value as YAML in a random style: block or flow mappings, shuffled keys,
/// single or double quotes, comments and blank lines.
fn emit(rng: &mut Rng, v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(map) if !map.is_empty() && rng.chance(70) => {
            let mut keys: Vec<&String> = map.keys().collect();
            for i in (1..keys.len()).rev() {
                keys.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for k in keys {
                if rng.chance(15) {
                    out.push_str(&format!("{:indent$}# a comment: with *stuff* &here\n", ""));
                }
                if rng.chance(10) {
                    out.push('\n');
                }
                out.push_str(&format!("{:indent$}{}:", "", quote(rng, k)));
                let child = &map[k];
                let block_child = matches!(child, Value::Object(m) if !m.is_empty())
                    || matches!(child, Value::Array(a) if !a.is_empty());
                if block_child {
                    out.push('\n');
                    emit(rng, child, indent + 2, out);
                } else {
                    out.push(' ');
                    flow(rng, child, out);
                    out.push('\n');
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.chance(70) => {
            for item in items {
                out.push_str(&format!("{:indent$}-\n", ""));
                if matches!(item, Value::Object(m) if !m.is_empty())
                    || matches!(item, Value::Array(a) if !a.is_empty())
                {
                    emit(rng, item, indent + 2, out);
                } else {
                    out.push_str(&format!("{:w$}", "", w = indent + 2));
                    flow(rng, item, out);
                    out.push('\n');
                }
            }
        }
        other => {
            out.push_str(&format!("{:indent$}", ""));
            flow(rng, other, out);
            out.push('\n');
        }
    }
}

fn flow(rng: &mut Rng, v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.reverse();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(if rng.chance(50) { ", " } else { ",  " });
                }
                out.push_str(&quote(rng, k));
                out.push_str(": ");
                flow(rng, &map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(rng, item, out);
            }
            out.push(']');
        }
        Value::String(s) => out.push_str(&quote(rng, s)),
        other => out.push_str(&other.to_string()),
    }
}

fn quote(rng: &mut Rng, s: &str) -> String {
    if rng.chance(50) || s.contains('\n') {
        // A JSON string is a valid YAML double-quoted scalar.
        Value::String(s.to_string()).to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

#[test]
fn hash_is_stable_under_reformatting_and_moving_between_files() {
    let mut rng = Rng(0x5eed_0002);
    for case in 0..60 {
        let objects: Vec<Object> = (0..1 + rng.below(4))
            .map(|i| random_container(&mut rng, &format!("c{i}"), 8000 + i as u16))
            .collect();
        let baseline_files = vec![(
            "all.yaml".to_string(),
            objects
                .iter()
                .map(|o| format!("---\n{}", o.to_yaml()))
                .collect::<String>(),
        )];
        let baseline = load_texts(&baseline_files);
        assert_eq!(baseline.problems, Vec::new(), "case {case}");
        let hashes: BTreeMap<String, String> = baseline
            .objects
            .iter()
            .map(|l| (l.object.name().to_string(), l.hash.clone()))
            .collect();
        // The same objects, restyled and spread over differently named files.
        let mut files: Vec<(String, String)> = (0..3)
            .map(|i| (format!("f{i}-{case}.yml"), String::new()))
            .collect();
        for o in &objects {
            let value = serde_json::to_value(o).unwrap();
            let mut text = String::new();
            if rng.chance(30) {
                text.push_str("# leading comment\n");
            }
            emit(&mut rng, &value, 0, &mut text);
            let f = rng.below(3) as usize;
            files[f].1.push_str(&format!("---\n{text}"));
        }
        let restyled = load_texts(&files);
        assert_eq!(restyled.problems, Vec::new(), "case {case}: {files:#?}");
        let again: BTreeMap<String, String> = restyled
            .objects
            .iter()
            .map(|l| (l.object.name().to_string(), l.hash.clone()))
            .collect();
        assert_eq!(again, hashes, "case {case}: {files:#?}");
    }
}

#[test]
fn arbitrary_bytes_never_panic_the_loader() {
    let mut rng = Rng(0x5eed_0003);
    let seed_texts: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/valid"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
    let specials: &[&[u8]] = &[
        b"---\n",
        b"...\n",
        b"&a ",
        b"*a",
        b"<<: ",
        b"!!binary ",
        b"{",
        b"[",
        b"}",
        b"]",
        b"\t",
        b": ",
        b"- ",
        b"|\n",
        b">-\n",
        b"%YAML 1.2\n",
        b"\"",
        b"'",
        b"#",
        b"\xff",
        b"\x00",
        b"? ",
    ];
    for case in 0..400 {
        let mut bytes: Vec<u8> = if rng.chance(30) {
            (0..rng.below(300)).map(|_| rng.next() as u8).collect()
        } else {
            rng.pick(&seed_texts).as_bytes().to_vec()
        };
        for _ in 0..rng.below(8) {
            let at = if bytes.is_empty() {
                0
            } else {
                rng.below(bytes.len() as u64) as usize
            };
            match rng.below(4) {
                0 => {
                    let s = *rng.pick(specials);
                    bytes.splice(at..at, s.iter().copied());
                }
                1 => {
                    let end = (at + rng.below(20) as usize).min(bytes.len());
                    bytes.drain(at..end);
                }
                2 => bytes.truncate(at),
                _ => {
                    if at < bytes.len() {
                        bytes[at] = rng.next() as u8;
                    }
                }
            }
        }
        let r = load_files(vec![(PathBuf::from(format!("fuzz-{case}.yaml")), bytes)]);
        // Whatever came out is consistent: a failing file yields no objects.
        if !r.problems.is_empty() {
            assert!(r.objects.is_empty(), "case {case}");
            assert!(r.files[0].error.is_some(), "case {case}");
        }
    }
}
