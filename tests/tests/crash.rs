//! End to end: the agent is killed with SIGKILL at random moments while its manifests change,
//! 50 times. Afterwards the host holds exactly what the manifests ask for: one process per
//! container, no duplicate, and no cgroup, network namespace, link, nftables rule or lease
//! of anything else. `BERTH_CRASH_SEED=N` replays a run; the seed is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::agent::{berth_bin, links_with, Agent};
use berth_tests::{push_busybox, Registry};
use serde_json::Value;

/// A small deterministic generator (PCG-style LCG): runs replay from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CONTAINERS: usize = 16;
const JOB: usize = 13;
const VOLUME_USER: usize = 14;
const DEPENDENT: usize = 15;
const PUBLISHER: usize = 10;

/// The manifests of the world: which containers exist and at which revision.
struct World {
    rev: Vec<u32>,
    present: Vec<bool>,
    host_port: u16,
}

fn name(i: usize) -> String {
    format!("c{i:02}")
}

impl World {
    fn container(&self, i: usize) -> String {
        let mut spec = String::new();
        if i == JOB {
            spec.push_str(&format!(
                "  command: [sh, -c, 'echo job {}; exit 0']\n  restartPolicy: Never\n",
                self.rev[i]
            ));
        } else {
            spec.push_str(&format!(
                "  command: [sleep, '{}']\n  stopTimeout: 1s\n",
                100_000 + self.rev[i]
            ));
        }
        if (10..13).contains(&i) {
            spec.push_str("  networks: [front]\n");
        }
        if i == PUBLISHER {
            spec.push_str(&format!(
                "  ports: [{{containerPort: 80, hostPort: {}}}]\n",
                self.host_port
            ));
        }
        if i == VOLUME_USER {
            spec.push_str("  mounts: [{volume: data, path: /data}]\n");
        }
        if i == DEPENDENT {
            spec.push_str("  dependsOn: [{name: c00}]\n");
        }
        format!(
            "apiVersion: berth/v1\nkind: Container\nmetadata: {{name: {}}}\nspec:\n  image: docker.io/library/busybox:1.36\n{spec}",
            name(i)
        )
    }

    fn write_all(&self, agent: &Agent) {
        agent
            .write_manifest(
                "net.yaml",
                "apiVersion: berth/v1\nkind: Network\nmetadata: {name: front}\n---\napiVersion: berth/v1\nkind: Volume\nmetadata: {name: data}\nspec: {reclaimPolicy: Delete}\n",
            )
            .unwrap();
        for i in 0..CONTAINERS {
            let file = format!("{}.yaml", name(i));
            if self.present[i] {
                agent.write_manifest(&file, &self.container(i)).unwrap();
            } else if agent.manifests.join(&file).exists() {
                agent.remove_manifest(&file).unwrap();
            }
        }
    }

    /// One to four random edits: a new revision of a container, or one more or one less.
    fn mutate(&mut self, rng: &mut Rng) {
        for _ in 0..=rng.below(4) {
            let i = rng.below(CONTAINERS as u64) as usize;
            match rng.below(3) {
                0 if i != 0 && i != VOLUME_USER => self.present[i] = !self.present[i],
                _ => self.rev[i] += 1,
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Whether the agent has nothing left to do: `berth plan` sees no change and every
/// container is where it should be.
fn converged(agent: &Agent, world: &World) -> Option<Vec<Value>> {
    let plan = Command::new(berth_bin())
        .args(["plan", "--detailed-exitcode", "--addr", &agent.cli_addr()])
        .output()
        .ok()?;
    if plan.status.code() != Some(0) {
        return None;
    }
    let list = agent.containers().ok()?;
    let names: BTreeSet<String> = list
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    let want: BTreeSet<String> = (0..CONTAINERS)
        .filter(|&i| world.present[i])
        .map(name)
        .collect();
    if names != want {
        return None;
    }
    let settled = list.iter().all(|c| {
        let job = c["name"] == name(JOB).as_str();
        let state_ok = if job {
            c["state"] == "exited" && c["exitCode"] == 0
        } else {
            c["state"] == "running"
        };
        state_ok && c["waitingFor"].is_null()
    });
    settled.then_some(list)
}

fn procs(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn fifty_kills_during_changes_leave_exactly_the_desired_host() {
    let seed = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed: {seed} (replay with BERTH_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let mut agent = Agent::start_with(
        &registry,
        "restartBackoff: {initial: 100ms, max: 1s, resetAfter: 1m}\n",
    )
    .unwrap();
    let mut world = World {
        rev: vec![0; CONTAINERS],
        present: vec![true; CONTAINERS],
        host_port: free_port(),
    };
    world.write_all(&agent);

    for round in 0..50 {
        world.mutate(&mut rng);
        world.write_all(&agent);
        std::thread::sleep(Duration::from_millis(rng.below(1_200)));
        agent
            .kill9()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        agent
            .restart()
            .unwrap_or_else(|e| panic!("round {round}: restart: {e}\n{}", agent.log()));
    }

    // The last word: every container, at a new revision.
    for i in 0..CONTAINERS {
        world.present[i] = true;
        world.rev[i] += 1;
    }
    world.write_all(&agent);
    let list = agent
        .wait_for("the host to converge", Duration::from_secs(120), |a| {
            converged(a, &world)
        })
        .unwrap();

    // One process per running container, in its own cgroup; no cgroup of anything else.
    let running: BTreeMap<String, String> = list
        .iter()
        .filter(|c| c["state"] == "running")
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ids: BTreeSet<String> = list
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let pids_dirs: Vec<_> = agent
        .cgroup_dirs()
        .into_iter()
        .filter(|d| {
            d.starts_with("/sys/fs/cgroup/pids/")
                && d.file_name()
                    .is_some_and(|n| *n != *agent.prefix && n != "shims")
        })
        .collect();
    let mut seen = BTreeSet::new();
    for dir in &pids_dirs {
        let id = dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            ids.contains(&id),
            "cgroup of no container: {}",
            dir.display()
        );
        let p = procs(dir);
        if running.contains_key(&id) {
            let names: Vec<String> = p.iter().map(|&pid| comm(pid)).collect();
            assert_eq!(names, ["sleep"], "container {}: {p:?}", running[&id]);
            seen.insert(id);
        } else {
            assert_eq!(p, Vec::<i32>::new(), "processes in finished {id}");
        }
    }
    assert_eq!(
        seen,
        running.keys().cloned().collect(),
        "every running container has its cgroup"
    );
    // The parent holds no process of its own.
    let parent = std::path::Path::new("/sys/fs/cgroup/pids").join(&agent.prefix);
    assert_eq!(procs(&parent), Vec::<i32>::new());

    // Networks: one namespace pin, one lease and one veth per running container; one DNAT
    // rule for the one published port.
    let netns: BTreeSet<String> = std::fs::read_dir(agent.run_dir.join("netns"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(netns, running.keys().cloned().collect::<BTreeSet<_>>());
    let mut addresses = BTreeSet::new();
    let mut leases = 0;
    for c in &list {
        for n in c["networks"].as_array().unwrap() {
            leases += 1;
            assert!(
                addresses.insert(n["address"].as_str().unwrap().to_string()),
                "address handed out twice: {n}"
            );
        }
    }
    assert_eq!(leases, running.len(), "one lease per running container");
    let net_prefix = std::fs::read_to_string(agent.root.path().join("agent.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("bridgePrefix:")
                .map(|p| p.trim().to_string())
        })
        .unwrap();
    let links = links_with(&net_prefix);
    assert_eq!(
        links.len(),
        running.len() + 2,
        "a veth per running container and two bridges: {links:?}"
    );
    let table = Command::new("nft")
        .args(["list", "table", "inet", &net_prefix])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let dnat = format!("dport {} ", world.host_port);
    assert_eq!(table.matches(&dnat).count(), 1, "{table}");
    // One shim per running container, all in berth's cgroup for shims.
    let shim_cgroup = parent.join("shims");
    let in_shims: Vec<String> = procs(&shim_cgroup).iter().map(|&p| comm(p)).collect();
    assert_eq!(in_shims.len(), running.len(), "{in_shims:?}");
    assert!(in_shims.iter().all(|c| c == "berth"), "{in_shims:?}");
    let shims = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c).to_string();
                    c.contains("\0shim\0") && c.contains(&agent.run_dir.display().to_string())
                })
                .unwrap_or(false)
        })
        .count();
    assert_eq!(shims, running.len());

    // How often a kill landed in the middle of making a container (for the record).
    let log = agent.log();
    eprintln!(
        "interrupted creates finished after a restart: {}, dead shims recorded: {}",
        log.matches("reason=\"an interrupted create\"").count(),
        log.matches("action=\"record-exit\"").count()
    );
    let started = Instant::now();
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
    eprintln!("cleanup took {:?}", started.elapsed());
}
