//! The plan as people read it (`berth plan`, `GET /v1/plan`): per object create, recreate,
//! remove, keep or frozen, with the fields that changed. A pure layer on top of
//! [`super::plan::plan`], so the preview and the agent never decide differently.

use std::collections::BTreeMap;

use berth_engine::state::ContainerRecord;
use berth_spec::{ImageRef, Kind, LoadResult, Object, ObjectRef, Problem};
use serde::Serialize;
use serde_json::Value;

use super::action::Key;
use super::diff::{diff, FieldChange};
use super::last_good::{self, GoodObject};
use super::observed::Observed;
use super::plan;
use crate::redact;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanAction {
    Create,
    Recreate,
    /// Only what berth does around the process changed (restart policy, probes, order,
    /// updates, stop signal): applied without recreating the container.
    Update,
    Remove,
    Keep,
    /// The object's file does not load (or the directory is unreadable): it stays at its
    /// last good version, whatever the directory says.
    Frozen,
}

/// An image pinned by digest in the manifest, against the digest that runs now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DigestChange {
    pub old: Option<String>,
    pub new: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanEntry {
    pub kind: Kind,
    pub name: String,
    pub action: PlanAction,
    /// The manifest file that defines the object (for a removal: the one it came from).
    pub file: Option<String>,
    /// Spec hash of what runs now.
    pub old_hash: Option<String>,
    /// Spec hash the manifests ask for.
    pub new_hash: Option<String>,
    /// For a recreate: the fields that differ, old → new.
    pub changes: Vec<FieldChange>,
    pub image_digest: Option<DigestChange>,
    pub note: Option<String>,
}

impl PlanEntry {
    fn new(object: ObjectRef, action: PlanAction, file: Option<String>) -> PlanEntry {
        PlanEntry {
            kind: object.kind,
            name: object.name,
            action,
            file,
            old_hash: None,
            new_hash: None,
            changes: Vec::new(),
            image_digest: None,
            note: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub recreate: usize,
    pub update: usize,
    pub remove: usize,
    pub unchanged: usize,
    pub frozen: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    /// The manifest directory the plan is for, as the agent knows it.
    pub dir: String,
    /// Every object, by kind and name.
    pub entries: Vec<PlanEntry>,
    pub summary: Summary,
    /// Objects of other kinds than containers: the reconciler converges networks and
    /// volumes outside [`plan::plan`], so they are listed, not planned.
    pub not_planned: Vec<ObjectRef>,
    /// Every problem of the load; the objects of their files are frozen.
    pub problems: Vec<Problem>,
}

impl PlanReport {
    /// Something would be created, recreated or removed.
    pub fn has_changes(&self) -> bool {
        let s = &self.summary;
        s.create + s.recreate + s.update + s.remove > 0
    }
}

/// The canonical JSON of an object as the hash sees it (without annotations).
fn hashed_value(object: &Object) -> Option<Value> {
    let mut v = serde_json::to_value(object).ok()?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("annotations");
    }
    Some(v)
}

/// The digest an image reference pins, if it pins one.
fn pinned(reference: &str) -> Option<String> {
    ImageRef::parse(reference).ok()?.digest
}

/// What changes from the running container `old` to the manifest's `new`. The whole running
/// object is known when its last good version has the running hash; otherwise the record's
/// spec is compared with the new spec.
fn field_changes(
    old: &ContainerRecord,
    new: &Object,
    good: &[GoodObject],
) -> (Vec<FieldChange>, bool) {
    let running = good.iter().find(|g| {
        g.object.kind() == Kind::Container && g.object.name() == old.name && g.hash == old.spec_hash
    });
    if let (Some(g), Some(mut new_v)) = (running, hashed_value(new)) {
        if let Some(old_v) = hashed_value(&g.object) {
            return (visible_diff(&old_v, &mut new_v), true);
        }
    }
    let old_spec: Value = serde_json::from_str(&old.spec_json).unwrap_or(Value::Null);
    let new_spec = hashed_value(new).and_then(|mut v| v.get_mut("spec").map(Value::take));
    match (old_spec.is_object(), new_spec) {
        (true, Some(new_spec)) => (
            visible_diff(
                &serde_json::json!({ "spec": old_spec }),
                &mut serde_json::json!({ "spec": new_spec }),
            ),
            false,
        ),
        _ => (Vec::new(), false),
    }
}

/// The changes from `old` to `new` with env values hidden. When `old` came from
/// `GET /v1/state` (its env values already hidden), `new`'s are hidden before comparing, so
/// only added and removed variables show.
fn visible_diff(old: &Value, new: &mut Value) -> Vec<FieldChange> {
    if old.get("spec").is_some_and(redact::env_hidden) {
        redact::hide_object_env(new);
    }
    let mut changes = diff(old, new);
    redact::hide_changes(&mut changes);
    changes
}

/// The plan for `load` against the container records: the same desired state and the same
/// [`plan::plan`] the agent runs, with nothing busy, no retry pending and no ordering (what
/// would change, not in which pass). `allow_empty`: the agent's `allowEmpty`.
pub fn preview(
    load: &LoadResult,
    good: &[GoodObject],
    records: &[ContainerRecord],
    dir: &str,
    now_ms: u64,
    allow_empty: bool,
) -> PlanReport {
    let desired = last_good::desired(load, good, allow_empty);
    let cfg = plan::PlanConfig {
        networking: false,
        ordering: false,
        ..plan::PlanConfig::default()
    };
    let observed = Observed::from_records(records.to_vec());
    let actions = plan::plan(&desired, &observed, &cfg, now_ms).actions;
    let verbs: BTreeMap<String, &'static str> = actions
        .iter()
        .filter(|a| matches!(a.keys().first(), Some(Key::Container(_))))
        .map(|a| (a.object(), a.verb()))
        .collect();
    let by_name: BTreeMap<&str, &ContainerRecord> =
        records.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut entries: BTreeMap<ObjectRef, PlanEntry> = BTreeMap::new();
    let mut not_planned = Vec::new();

    for l in &load.objects {
        let object_ref = l.object.object_ref();
        let file = Some(l.source.file.display().to_string());
        if l.object.kind() != Kind::Container {
            not_planned.push(object_ref);
            continue;
        }
        let record = by_name.get(l.object.name()).copied();
        let verb = verbs.get(l.object.name()).copied();
        let action = match verb {
            Some("create") => PlanAction::Create,
            Some("recreate") => PlanAction::Recreate,
            Some("refresh") if record.is_some_and(|r| r.spec_hash != l.hash) => PlanAction::Update,
            _ => PlanAction::Keep,
        };
        let mut e = PlanEntry::new(object_ref, action, file);
        e.new_hash = Some(l.hash.clone());
        e.old_hash = record.map(|r| r.spec_hash.clone());
        if let (PlanAction::Update, Some(r)) = (action, record) {
            e.changes = field_changes(r, &l.object, good).0;
            e.note = Some("applied without recreating the container".to_string());
        }
        if let (PlanAction::Recreate, Some(r)) = (action, record) {
            let (changes, whole) = field_changes(r, &l.object, good);
            e.changes = changes;
            if let Object::Container(c) = &l.object {
                if let Some(new) = pinned(&c.spec.image) {
                    let old = pinned(&r.image).or_else(|| r.image_digest.clone());
                    if old.as_deref() != Some(new.as_str()) {
                        e.image_digest = Some(DigestChange { old, new });
                    }
                }
            }
            if r.spec_hash == l.hash {
                e.note = Some(format!(
                    "finishes a create that was interrupted (state {})",
                    r.state
                ));
            } else if e.changes.is_empty() {
                e.note = Some(
                    if whole {
                        "no field differs: an env file's content or berth's hash version changed (or an env value, when the plan is made from GET /v1/state)"
                    } else {
                        "no spec field differs: the labels, an env value, an env file's content or berth's hash version changed"
                    }
                    .to_string(),
                );
            }
        }
        if verb == Some("restart") {
            if let Some(r) = record {
                let code = r
                    .exit_code
                    .map(|c| format!(" with code {c}"))
                    .unwrap_or_default();
                e.note = Some(format!(
                    "{}{code}: restarts under its restartPolicy",
                    r.state
                ));
            }
        }
        entries.insert(e.kind_ref(), e);
    }

    // Objects of files that do not load.
    for f in load.files.iter().filter(|f| f.error.is_some()) {
        let file = f.path.display().to_string();
        for o in &f.objects {
            if entries.contains_key(o) {
                continue; // Defined again in a file that loads (which then wins).
            }
            let mut e = PlanEntry::new(o.clone(), PlanAction::Frozen, Some(file.clone()));
            if o.kind == Kind::Container {
                e.old_hash = by_name.get(o.name.as_str()).map(|r| r.spec_hash.clone());
                e.new_hash = desired.containers.get(&o.name).map(|d| d.hash.clone());
            }
            e.note = Some(match &e.new_hash {
                Some(_) => format!("{file} does not load: kept at its last good version"),
                None => format!("{file} does not load and has no last good version"),
            });
            entries.insert(o.clone(), e);
        }
    }
    // Containers held at their last good version whose file is gone or unreadable.
    for (name, d) in &desired.containers {
        let r = ObjectRef::new(Kind::Container, name.clone());
        if entries.contains_key(&r) {
            continue;
        }
        let mut e = PlanEntry::new(r.clone(), PlanAction::Frozen, Some(d.source_file.clone()));
        e.old_hash = by_name.get(name.as_str()).map(|r| r.spec_hash.clone());
        e.new_hash = Some(d.hash.clone());
        e.note = Some(if desired.empty_guard {
            "the manifest directory holds no object: kept, nothing is removed (allowEmpty is off)"
                .to_string()
        } else if desired.freeze_all {
            "the manifest directory does not load: kept at its last good version".to_string()
        } else {
            format!(
                "{} does not load: kept at its last good version",
                d.source_file
            )
        });
        entries.insert(r, e);
    }
    for rec in records {
        let r = ObjectRef::new(Kind::Container, rec.name.clone());
        if entries.contains_key(&r) {
            continue;
        }
        let removed = verbs.get(rec.name.as_str()) == Some(&"remove");
        let mut e = PlanEntry::new(
            r.clone(),
            if removed {
                PlanAction::Remove
            } else {
                PlanAction::Frozen
            },
            Some(rec.source_file.clone()),
        );
        e.old_hash = Some(rec.spec_hash.clone());
        e.note = Some(if removed {
            "no manifest defines it any more".to_string()
        } else if desired.empty_guard {
            "the manifest directory holds no object: left as it is (allowEmpty is off)".to_string()
        } else {
            "its manifest does not load: left as it is".to_string()
        });
        entries.insert(r, e);
    }

    let mut summary = Summary::default();
    for e in entries.values() {
        match e.action {
            PlanAction::Create => summary.create += 1,
            PlanAction::Recreate => summary.recreate += 1,
            PlanAction::Update => summary.update += 1,
            PlanAction::Remove => summary.remove += 1,
            PlanAction::Keep => summary.unchanged += 1,
            PlanAction::Frozen => summary.frozen += 1,
        }
    }
    not_planned.sort();
    PlanReport {
        dir: dir.to_string(),
        entries: entries.into_values().collect(),
        summary,
        not_planned,
        problems: load.problems.clone(),
    }
}

impl PlanEntry {
    fn kind_ref(&self) -> ObjectRef {
        ObjectRef::new(self.kind, self.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::last_good::{decode_all, encode};
    use berth_engine::state::ContainerState;

    fn web(name: &str, args: &str, extra: &str) -> String {
        format!("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: docker.io/library/busybox:1.36\n  args: [{args}]\n{extra}")
    }

    use crate::reconcile::test_load as load;

    /// The record the agent would have written for each loaded container, running.
    fn records(l: &LoadResult) -> Vec<ContainerRecord> {
        l.objects
            .iter()
            .filter_map(|o| match &o.object {
                Object::Container(c) => Some(ContainerRecord {
                    id: format!("{}-1", c.metadata.name),
                    source_file: o.source.file.display().to_string(),
                    spec_hash: o.hash.clone(),
                    runtime_hash: Some(o.runtime_hash.clone()),
                    spec_json: serde_json::to_string(&c.spec).unwrap(),
                    image: c.spec.image.clone(),
                    image_digest: Some(format!("sha256:{}", "1".repeat(64))),
                    ..crate::reconcile::fake_record(&c.metadata.name)
                }),
                _ => None,
            })
            .collect()
    }

    fn good(l: &LoadResult) -> Vec<GoodObject> {
        decode_all(&l.objects.iter().map(|o| encode(o, 1)).collect::<Vec<_>>()).0
    }

    fn actions(p: &PlanReport) -> Vec<String> {
        p.entries
            .iter()
            .map(|e| format!("{:?} {}/{}", e.action, e.kind, e.name))
            .collect()
    }

    #[test]
    fn create_recreate_remove_keep_with_field_changes() {
        let live = load(&[
            ("/m/web.yaml", &web("web", "a", "")),
            ("/m/old.yaml", &web("old", "a", "")),
            ("/m/db.yaml", &web("db", "a", "")),
        ]);
        let (recs, good) = (records(&live), good(&live));
        let next = load(&[
            ("/m/web.yaml", &web("web", "b, c", "  env: {A: '1'}\n")),
            ("/m/db.yaml", &web("db", "a", "")),
            ("/m/api.yaml", &web("api", "a", "")),
        ]);
        let p = preview(&next, &good, &recs, "/m", 100, true);
        assert_eq!(
            actions(&p),
            [
                "Create Container/api",
                "Keep Container/db",
                "Remove Container/old",
                "Recreate Container/web"
            ]
        );
        let web = &p.entries[3];
        let shown: Vec<String> = web.changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                r#"spec.args: ["a"] → ["b","c"]"#,
                r#"spec.env.A: (none) → "(not shown)""#
            ]
        );
        assert_eq!(web.old_hash.as_deref(), Some(live.objects[0].hash.as_str()));
        assert_eq!(web.new_hash.as_deref(), Some(next.objects[0].hash.as_str()));
        assert_eq!(
            web.image_digest, None,
            "a tag is not resolved without registry traffic"
        );
        assert_eq!(
            p.summary,
            Summary {
                update: 0,
                create: 1,
                recreate: 1,
                remove: 1,
                unchanged: 1,
                frozen: 0
            }
        );
        assert!(p.has_changes());
        assert_eq!(p.entries[2].file.as_deref(), Some("/m/old.yaml"));
    }

    #[test]
    fn label_changes_show_when_the_running_object_is_known() {
        let live = load(&[("/m/web.yaml", &web("web", "a", ""))]);
        let labelled = web("web", "a", "").replace(
            "  name: web\n",
            "  name: web\n  labels: {tier: front}\n  annotations: {berth/prune: disabled}\n",
        );
        let next = load(&[("/m/web.yaml", &labelled)]);
        let p = preview(&next, &good(&live), &records(&live), "/m", 100, true);
        let shown: Vec<String> = p.entries[0].changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown, [r#"metadata.labels.tier: (none) → "front""#]);
        // Without the running object only the spec is compared, and the note says so.
        let p = preview(&next, &[], &records(&live), "/m", 100, true);
        assert_eq!(p.entries[0].action, PlanAction::Recreate);
        assert_eq!(p.entries[0].changes, []);
        assert!(
            p.entries[0]
                .note
                .as_deref()
                .unwrap()
                .starts_with("no spec field differs: the labels"),
            "{:?}",
            p.entries[0].note
        );
    }

    #[test]
    fn pinned_digests_are_shown() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let pinned = |d: &str| web("web", "x", "").replace("busybox:1.36", &format!("busybox@{d}"));
        let live = load(&[("/m/web.yaml", &pinned(&a))]);
        let next = load(&[("/m/web.yaml", &pinned(&b))]);
        let p = preview(&next, &good(&live), &records(&live), "/m", 100, true);
        assert_eq!(
            p.entries[0].image_digest,
            Some(DigestChange {
                old: Some(a.clone()),
                new: b.clone()
            })
        );
        // From a tag to a pin: the digest that runs now is the old side.
        let live = load(&[("/m/web.yaml", &web("web", "x", ""))]);
        let p = preview(&next, &good(&live), &records(&live), "/m", 100, true);
        assert_eq!(
            p.entries[0].image_digest,
            Some(DigestChange {
                old: Some(format!("sha256:{}", "1".repeat(64))),
                new: b
            })
        );
    }

    #[test]
    fn broken_files_are_frozen_and_nothing_of_theirs_is_removed() {
        let live = load(&[
            ("/m/web.yaml", &web("web", "a", "")),
            ("/m/db.yaml", &web("db", "a", "")),
        ]);
        let next = load(&[
            ("/m/web.yaml", &web("web", "a", "  bogus: 1\n")),
            ("/m/db.yaml", &web("db", "a", "")),
        ]);
        let p = preview(&next, &good(&live), &records(&live), "/m", 100, true);
        assert_eq!(actions(&p), ["Keep Container/db", "Frozen Container/web"]);
        assert_eq!(
            p.entries[1].note.as_deref(),
            Some("/m/web.yaml does not load: kept at its last good version")
        );
        assert_eq!(p.summary.frozen, 1);
        assert!(!p.has_changes());
        assert_eq!(p.problems.len(), 1);

        let gone = berth_spec::load_dir(std::path::Path::new("/nonexistent/berth-plan"));
        let p = preview(&gone, &good(&live), &records(&live), "/m", 100, true);
        assert_eq!(actions(&p), ["Frozen Container/db", "Frozen Container/web"]);
        let p = preview(&gone, &[], &records(&live), "/m", 100, true);
        assert_eq!(actions(&p), ["Frozen Container/db", "Frozen Container/web"]);
        assert_eq!(
            p.entries[0].note.as_deref(),
            Some("its manifest does not load: left as it is")
        );
    }

    #[test]
    fn exited_containers_due_for_a_restart_are_unchanged() {
        let live = load(&[("/m/web.yaml", &web("web", "a", ""))]);
        let mut recs = records(&live);
        recs[0].state = ContainerState::Exited;
        recs[0].exit_code = Some(3);
        recs[0].finished_at_ms = Some(10_000);
        let p = preview(&live, &good(&live), &recs, "/m", 100_000, true);
        assert_eq!(actions(&p), ["Keep Container/web"]);
        assert_eq!(
            p.entries[0].note.as_deref(),
            Some("exited with code 3: restarts under its restartPolicy")
        );
        recs[0].state = ContainerState::Pulling;
        let p = preview(&live, &good(&live), &recs, "/m", 100_000, true);
        assert_eq!(actions(&p), ["Recreate Container/web"]);
        assert_eq!(
            p.entries[0].note.as_deref(),
            Some("finishes a create that was interrupted (state pulling)")
        );
    }

    #[test]
    fn networks_and_volumes_are_listed_as_not_planned() {
        let l = load(&[(
            "/m/v.yaml",
            "apiVersion: berth/v1\nkind: Volume\nmetadata: {name: data}\n",
        )]);
        let p = preview(&l, &[], &[], "/m", 1, true);
        assert_eq!(p.entries, []);
        assert_eq!(p.not_planned, [ObjectRef::new(Kind::Volume, "data")]);
    }
}
