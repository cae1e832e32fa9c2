//! A fleet following one git server (issue 11): 1, 10 and 20 agents on this machine, each
//! with its own dirs, cgroup parent and prefix, sync one repository served by Git's smart
//! HTTP (git-http-backend behind lighttpd, TLS and basic auth) with signed commits. After a
//! commit that changes every host's container, the time until each agent runs the new
//! revision (the source switched and the container recreated and running): median and worst,
//! and the requests the server saw meanwhile.
//!
//! Run: `cargo build --release -p berth && BERTH_BIN=$PWD/target/release/berth cargo bench -p berth-tests --bench fleet`
//! (root; needs git, lighttpd with mod_openssl, openssl, ssh-keygen like the tests).

use std::time::{Duration, Instant};

use berth_tests::agent::Agent;
use berth_tests::git::{bare, Repo, Server, SshKey};
use berth_tests::{push_busybox, Registry};
use nix::sys::signal::Signal;
use serde_json::Value;

const INTERVAL_SECS: u64 = 10;
const ROUNDS: usize = 5;
const SIZES: [usize; 3] = [1, 10, 20];

/// A container that stops at once on SIGTERM (the time measured is berth's, not an app's
/// shutdown); `revision` changes its spec.
fn web(revision: &str) -> String {
    format!("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sh, -c, 'trap \"exit 0\" TERM; while :; do sleep 1 & wait $!; done', '{revision}']\n  networkMode: none\n  stopTimeout: 1s\n")
}

fn json(agent: &Agent, path: &str) -> Value {
    serde_json::from_str(&agent.get(path).unwrap_or_default()).unwrap_or(Value::Null)
}

/// Whether `agent` runs `revision`: its source switched to it and `web` runs a spec other
/// than `old_spec`.
fn runs(agent: &Agent, revision: &str, old_spec: &Value) -> bool {
    json(agent, "/v1/source")["revision"] == revision
        && agent
            .container("web")
            .is_some_and(|c| c["state"] == "running" && c["specHash"] != *old_spec)
}

/// A random duration in [0, max).
fn random_below(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(r % max.as_millis().max(1) as u64)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let work = tempfile::Builder::new()
        .prefix("berth-fleet-")
        .tempdir()
        .unwrap();
    let w = work.path();
    let repo = Repo::init(&w.join("work")).unwrap();
    std::fs::create_dir_all(w.join("srv")).unwrap();
    let bare_repo = bare(&w.join("srv/fleet.git")).unwrap();
    let admin = SshKey::generate(w, "admin").unwrap();
    let signers = w.join("allowed_signers");
    std::fs::write(
        &signers,
        admin.allowed_signer_line("admin@example.org") + "\n",
    )
    .unwrap();
    let password = w.join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let server = Server::git_https(&w.join("srv"), w, "fleet", "s3cret").unwrap();
    let url = format!("https://127.0.0.1:{}/git/fleet.git", server.port);

    let mut revision = repo
        .commit(
            &[("apps/web.yaml", Some(&web("r0")))],
            Some(&admin),
            "start",
        )
        .unwrap();
    repo.push(&bare_repo, "main:main").unwrap();

    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let config = format!(
        "source:\n  git:\n    url: {url}\n    paths: [apps]\n    interval: {INTERVAL_SECS}s\n    username: fleet\n    passwordFile: {}\n    caFile: {}\n    verify:\n      allowedSigners: {}\n",
        password.display(),
        w.join("ca.pem").display(),
        signers.display()
    );

    println!("fleet: agents following one git server over HTTPS (interval {INTERVAL_SECS}s, give or take a tenth), {ROUNDS} commits per fleet size, each at a random moment");
    println!("time from push until an agent runs the new revision (source switched, container recreated and running)");
    println!();
    println!(
        "{:>6}  {:>12}  {:>12}  {:>12}  {:>22}",
        "agents", "median s", "best s", "worst s", "requests/commit (GET+POST)"
    );
    let mut agents: Vec<Agent> = Vec::new();
    let mut n = 0;
    for size in SIZES {
        while agents.len() < size {
            let a = Agent::start_with(&registry, &config).expect("start agent");
            a.wait_for("the first revision", Duration::from_secs(120), |a| {
                runs(a, &revision, &Value::Null).then_some(())
            })
            .unwrap();
            agents.push(a);
        }
        let mut times = Vec::new();
        let mut requests = Vec::new();
        for _ in 0..ROUNDS {
            n += 1;
            // Commits land at any moment of the agents' sync cycles, not right after a sync.
            std::thread::sleep(random_below(Duration::from_secs(INTERVAL_SECS)));
            let old: Vec<Value> = agents
                .iter()
                .map(|a| a.container("web").unwrap()["specHash"].clone())
                .collect();
            let before = Server::requests(w).len();
            revision = repo
                .commit(
                    &[("apps/web.yaml", Some(&web(&format!("r{n}"))))],
                    Some(&admin),
                    "change",
                )
                .unwrap();
            repo.push(&bare_repo, "main:main").unwrap();
            let t0 = Instant::now();
            let mut done: Vec<Option<Duration>> = vec![None; agents.len()];
            while done.iter().any(Option::is_none) {
                for (i, a) in agents.iter().enumerate() {
                    if done[i].is_none() && runs(a, &revision, &old[i]) {
                        done[i] = Some(t0.elapsed());
                    }
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(INTERVAL_SECS * 6),
                    "agents did not follow within {}s: {done:?}",
                    INTERVAL_SECS * 6
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let seen = Server::requests(w);
            let gets = seen[before..]
                .iter()
                .filter(|l| l.starts_with("GET"))
                .count();
            let posts = seen[before..]
                .iter()
                .filter(|l| l.starts_with("POST"))
                .count();
            requests.push((gets, posts));
            times.extend(done.into_iter().flatten());
        }
        times.sort();
        let median = times[times.len() / 2];
        let (g, p): (Vec<usize>, Vec<usize>) = requests.iter().copied().unzip();
        let avg = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        println!(
            "{:>6}  {:>12.2}  {:>12.2}  {:>12.2}  {:>15.1} ({:.1}+{:.1})",
            size,
            secs(median),
            secs(times[0]),
            secs(*times.last().unwrap()),
            avg(&g) + avg(&p),
            avg(&g),
            avg(&p)
        );
    }
    println!();
    println!("requests/commit: what the server served from the push until the last agent ran the revision (each sync lists refs: a GET and a POST; a changed ref adds a fetch POST)");

    repo.commit(
        &[("apps/web.yaml", None), ("apps/.keep", Some(""))],
        Some(&admin),
        "end",
    )
    .unwrap();
    repo.push(&bare_repo, "main:main").unwrap();
    for a in &agents {
        a.signal(Signal::SIGHUP).unwrap();
    }
    for a in agents {
        let left = a.finish().unwrap();
        assert!(left.is_empty(), "left on the host: {left:#?}");
    }
    drop(server);
}
