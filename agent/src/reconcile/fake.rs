//! A fake [`Engine`] for the executor and loop tests: it records every call, keeps a small
//! model of the host (images, running containers with their shims, cgroups, networks,
//! volumes) and lets a test end a container, kill its shim or script its probes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_engine::images::{Image, ImageConfig};
use berth_engine::network::NetworkDef;
use berth_engine::runtime::ExitRecord;
use berth_engine::state::{ContainerRecord, ContainerState};
use berth_spec::{ContainerSpec, Probe};
use tokio::sync::watch;

use super::engine::{CgroupUse, Engine, ExitWatch, ProbeResult, ProbeTarget, StartError, Started};

/// One call the executor made, with what identifies its object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    Pull(String),
    /// Container name and the image digest it started on.
    Start(String, String),
    Stop(String),
    Remove(String),
    Kill(String),
    EnsureNetwork(String),
    RemoveNetwork(String),
    RepairNetworks,
    Detach(String),
    CreateVolume(String),
    DeleteVolume(String),
    KillStray(String),
}

/// A container process the fake runs.
struct Proc {
    name: String,
    /// The image digest it started on.
    digest: String,
    /// Flips to true when the shim exits.
    exited: watch::Sender<bool>,
    shim_alive: bool,
}

#[derive(Default)]
pub struct FakeState {
    pub calls: Vec<Call>,
    /// The local image store, by reference.
    pub images: BTreeMap<String, Image>,
    /// What a pull of a reference gives: the image, or the error.
    pub registry: BTreeMap<String, Result<Image, String>>,
    /// Container name → how its next starts fail.
    pub start_errors: BTreeMap<String, StartError>,
    procs: BTreeMap<String, Proc>,
    pub exits: BTreeMap<String, ExitRecord>,
    /// Container id → processes in its cgroup.
    pub cgroups: BTreeMap<String, Vec<i32>>,
    /// Cgroups under the parent that the test planted (stray ones).
    pub stray_cgroups: BTreeMap<String, Vec<i32>>,
    /// Container name → probe results to give, in order (the last one repeats).
    pub probes: BTreeMap<String, VecDeque<ProbeResult>>,
    pub networks: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub oom: BTreeSet<String>,
    /// Container ids whose cgroup someone removed.
    pub lost_cgroups: BTreeSet<String>,
    /// When each start happened (tokio's clock), with the container's name.
    pub start_times: Vec<(String, tokio::time::Instant)>,
    next_pid: i32,
}

pub struct FakeEngine {
    pub state: Mutex<FakeState>,
    /// The reconciler's clock: exits are stamped with it.
    clock: super::Clock,
}

pub fn image(reference: &str, digest_char: char) -> Image {
    Image {
        reference: reference.to_string(),
        digest: format!("sha256:{}", digest_char.to_string().repeat(64)),
        config: ImageConfig::default(),
        layers: Vec::new(),
    }
}

impl FakeEngine {
    pub fn new(clock: super::Clock) -> Arc<FakeEngine> {
        let f = FakeEngine {
            state: Mutex::default(),
            clock,
        };
        f.state().next_pid = 100;
        Arc::new(f)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An image the registry serves (not in the local store yet).
    pub fn serve(&self, reference: &str, digest_char: char) {
        self.state()
            .registry
            .insert(reference.to_string(), Ok(image(reference, digest_char)));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }

    /// The container's process ends with `code`; its shim writes the exit record and exits.
    pub fn exit(&self, id: &str, code: i32) {
        let ms = self.clock.now_ms();
        let mut s = self.state();
        s.exits.insert(
            id.to_string(),
            ExitRecord {
                exit_code: code,
                signal: None,
                finished_at: ms / 1000,
                finished_at_ms: Some(ms),
                error: None,
            },
        );
        s.cgroups.remove(id);
        if let Some(p) = s.procs.get_mut(id) {
            p.shim_alive = false;
            let _ = p.exited.send(true);
        }
    }

    /// The shim is killed: no exit record, and the container's processes keep running.
    pub fn kill_shim(&self, id: &str) {
        let mut s = self.state();
        if let Some(p) = s.procs.get_mut(id) {
            p.shim_alive = false;
            let _ = p.exited.send(true);
        }
    }

    /// Ids of the containers whose processes run (in a cgroup), by name.
    pub fn running(&self) -> BTreeMap<String, String> {
        let s = self.state();
        s.procs
            .iter()
            .filter(|(id, _)| s.cgroups.get(*id).is_some_and(|p| !p.is_empty()))
            .map(|(id, p)| (p.name.clone(), id.clone()))
            .collect()
    }

    /// The id of the running container `name` if it runs on an image whose digest is all
    /// `digest_char`.
    pub fn running_on(&self, name: &str, digest_char: char) -> Option<String> {
        let digest = image("", digest_char).digest;
        let s = self.state();
        s.procs
            .iter()
            .find(|(id, p)| {
                p.name == name
                    && p.digest == digest
                    && s.cgroups.get(*id).is_some_and(|c| !c.is_empty())
            })
            .map(|(id, _)| id.clone())
    }

    fn record(&self, call: Call) {
        self.state().calls.push(call);
    }
}

impl Engine for FakeEngine {
    fn lookup_image(&self, reference: &str) -> Result<Option<Image>, String> {
        let s = self.state();
        // A pinned reference finds the image it pins, as the real store's digest records do.
        let by_digest = reference
            .split_once('@')
            .and_then(|(_, digest)| s.images.values().find(|i| i.digest == digest).cloned());
        Ok(s.images.get(reference).cloned().or(by_digest))
    }

    async fn pull_image(&self, _name: &str, reference: &str) -> Result<Image, String> {
        self.record(Call::Pull(reference.to_string()));
        let mut s = self.state();
        let result = s
            .registry
            .get(reference)
            .cloned()
            .unwrap_or_else(|| Err(format!("pull {reference}: manifest unknown")));
        if let Ok(i) = &result {
            s.images.insert(reference.to_string(), i.clone());
        }
        result
    }

    async fn start(
        &self,
        rec: &ContainerRecord,
        _spec: &ContainerSpec,
        image: &Image,
    ) -> Result<Started, StartError> {
        self.record(Call::Start(rec.name.clone(), image.digest.clone()));
        let mut s = self.state();
        s.start_times
            .push((rec.name.clone(), tokio::time::Instant::now()));
        if let Some(e) = s.start_errors.get(&rec.name) {
            return Err(e.clone());
        }
        s.next_pid += 2;
        let pid = s.next_pid;
        let (tx, mut rx) = watch::channel(false);
        s.procs.insert(
            rec.id.clone(),
            Proc {
                name: rec.name.clone(),
                digest: image.digest.clone(),
                exited: tx,
                shim_alive: true,
            },
        );
        s.cgroups.insert(rec.id.clone(), vec![pid + 1]);
        s.exits.remove(&rec.id);
        Ok(Started {
            shim_pid: pid,
            shim_start_time: 1,
            init_pid: pid + 1,
            exit: Box::pin(async move {
                let _ = rx.wait_for(|e| *e).await;
            }),
        })
    }

    async fn stop(&self, rec: &ContainerRecord, _spec: &ContainerSpec) {
        self.record(Call::Stop(rec.name.clone()));
        let was_running = self.state().cgroups.contains_key(&rec.id);
        if was_running {
            self.exit(&rec.id, 137);
        }
    }

    async fn remove(&self, id: &str) -> Result<(), String> {
        self.record(Call::Remove(id.to_string()));
        let mut s = self.state();
        s.procs.remove(id);
        s.cgroups.remove(id);
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<(), String> {
        let mut s = self.state();
        if s.cgroups.remove(id).is_some() {
            s.calls.push(Call::Kill(id.to_string()));
        }
        Ok(())
    }

    fn exit_record(&self, id: &str) -> Option<ExitRecord> {
        self.state().exits.get(id).cloned()
    }

    fn oom_killed(&self, id: &str) -> bool {
        self.state().oom.contains(id)
    }

    fn watch(&self, rec: &ContainerRecord) -> Option<ExitWatch> {
        let s = self.state();
        let p = s.procs.get(&rec.id).filter(|p| p.shim_alive)?;
        let mut rx = p.exited.subscribe();
        Some(Box::pin(async move {
            let _ = rx.wait_for(|e| *e).await;
        }))
    }

    fn shim_alive(&self, rec: &ContainerRecord) -> bool {
        self.state()
            .procs
            .get(&rec.id)
            .is_some_and(|p| p.shim_alive)
    }

    fn cgroup_intact(&self, id: &str) -> bool {
        !self.state().lost_cgroups.contains(id)
    }

    fn cgroup_pids(&self, id: &str) -> Vec<i32> {
        self.state().cgroups.get(id).cloned().unwrap_or_default()
    }

    fn cgroups(&self) -> Result<Vec<CgroupUse>, String> {
        let s = self.state();
        Ok(s.cgroups
            .iter()
            .chain(s.stray_cgroups.iter())
            .map(|(name, pids)| CgroupUse {
                name: name.clone(),
                pids: pids.clone(),
            })
            .collect())
    }

    async fn kill_stray(&self, cgroup: &str) -> Result<(), String> {
        self.record(Call::KillStray(cgroup.to_string()));
        self.state().stray_cgroups.remove(cgroup);
        Ok(())
    }

    fn netns_ids(&self) -> Vec<String> {
        Vec::new()
    }

    async fn missing_links(&self, _interfaces: BTreeSet<String>) -> BTreeSet<String> {
        BTreeSet::new()
    }

    async fn ensure_network(&self, def: NetworkDef) -> Result<(), String> {
        self.record(Call::EnsureNetwork(def.name.clone()));
        self.state().networks.insert(def.name);
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<(), String> {
        self.record(Call::RemoveNetwork(name.to_string()));
        self.state().networks.remove(name);
        Ok(())
    }

    async fn repair_networks(&self, _defs: Vec<NetworkDef>) -> Result<(), String> {
        self.record(Call::RepairNetworks);
        Ok(())
    }

    async fn detach(&self, id: &str) -> Result<(), String> {
        self.record(Call::Detach(id.to_string()));
        Ok(())
    }

    fn create_volume(&self, name: &str) -> Result<(), String> {
        self.record(Call::CreateVolume(name.to_string()));
        self.state().volumes.insert(name.to_string());
        Ok(())
    }

    fn delete_volume(&self, name: &str) -> Result<(), String> {
        self.record(Call::DeleteVolume(name.to_string()));
        self.state().volumes.remove(name);
        Ok(())
    }

    async fn probe(&self, target: &ProbeTarget, _probe: &Probe, _timeout: Duration) -> ProbeResult {
        let name = self
            .state()
            .procs
            .get(&target.id)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let mut s = self.state();
        let queue = s.probes.entry(name).or_default();
        let r = if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        };
        r.unwrap_or(ProbeResult {
            healthy: true,
            output: "ok".into(),
            exit_code: Some(0),
        })
    }
}

/// A finished record of `name` (for plan tables).
pub fn record(name: &str, hash: &str, state: ContainerState) -> ContainerRecord {
    ContainerRecord {
        name: name.into(),
        id: format!("{name}-0000000{}", name.len() % 10),
        source_file: "/m/a.yaml".into(),
        spec_hash: hash.into(),
        runtime_hash: Some(format!("run-{hash}")),
        spec_json: r#"{"image":"busybox"}"#.into(),
        image: "busybox".into(),
        image_digest: Some("sha256:1".into()),
        state,
        shim_pid: Some(10),
        shim_start_time: Some(1),
        init_pid: Some(11),
        exit_code: None,
        restart_count: 0,
        message: None,
        created_at_ms: 0,
        started_at_ms: Some(100_000),
        finished_at_ms: None,
        reason: None,
        backoff_streak: 0,
        ever_ran: true,
        rollout: None,
        rejected_hash: None,
    }
}
