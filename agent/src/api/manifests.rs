//! `GET /v1/manifests`: every manifest file as the last pass saw it — its objects, its error,
//! and whether its containers run at their last good version — plus directory problems.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::state::{ContainerRecord, LastGoodRecord};
use berth_spec::{Kind, LoadResult, ObjectRef, Problem};
use serde::Serialize;

use super::{error, ApiState};

#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestsView {
    pub dir: String,
    /// Unix seconds of the pass that loaded the directory.
    pub loaded_at: u64,
    pub files: Vec<FileView>,
    /// Problems of the directory itself (missing, unreadable, a file name that is not UTF-8):
    /// while there are any, every object is frozen.
    pub problems: Vec<Problem>,
    /// The directory holds no object and `allowEmpty` is off: berth removes nothing.
    pub prune_blocked: bool,
}

#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    pub path: String,
    /// Every problem of the file, one per line; `null` when it loads.
    pub error: Option<String>,
    pub objects: Vec<ObjectView>,
    /// Every container of the file runs, at its last good version.
    pub running_last_good: bool,
}

#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectView {
    pub kind: Kind,
    pub name: String,
    /// The spec hash of this load; `null` when the file does not load.
    pub hash: Option<String>,
    /// The version the agent applies: this load's, or the last good one of a broken file.
    pub last_good_hash: Option<String>,
    /// The container's state and spec hash, for containers berth created.
    pub state: Option<String>,
    pub running_hash: Option<String>,
    /// For containers: it runs, at the last good version. `null` for other kinds.
    pub running_last_good: Option<bool>,
}

/// The view of one load against the last-good rows and the container records.
pub fn view(
    dir: &str,
    loaded_at: u64,
    load: &LoadResult,
    last_good: &[LastGoodRecord],
    records: &[ContainerRecord],
) -> ManifestsView {
    let good: BTreeMap<(&str, &str), &LastGoodRecord> = last_good
        .iter()
        .map(|r| ((r.kind.as_str(), r.name.as_str()), r))
        .collect();
    let records: BTreeMap<&str, &ContainerRecord> =
        records.iter().map(|r| (r.name.as_str(), r)).collect();
    let hashes: BTreeMap<_, &str> = load
        .objects
        .iter()
        .map(|l| (l.object.object_ref(), l.hash.as_str()))
        .collect();
    let files = load
        .files
        .iter()
        .map(|f| {
            let path = f.path.display().to_string();
            // A file too broken to name its objects still holds its last good ones.
            let mut named = f.objects.clone();
            if f.error.is_some() {
                for g in last_good.iter().filter(|g| g.source_file == path) {
                    if let Some(kind) = Kind::parse(&g.kind) {
                        let r = ObjectRef::new(kind, g.name.clone());
                        if !named.contains(&r) {
                            named.push(r);
                        }
                    }
                }
            }
            let objects: Vec<ObjectView> = named
                .iter()
                .map(|o| {
                    let hash = f
                        .error
                        .is_none()
                        .then(|| hashes.get(o).map(|h| h.to_string()))
                        .flatten();
                    let last_good_hash = good
                        .get(&(o.kind.as_str(), o.name.as_str()))
                        .map(|g| g.spec_hash.clone());
                    let record = (o.kind == Kind::Container)
                        .then(|| records.get(o.name.as_str()))
                        .flatten();
                    let running_last_good = (o.kind == Kind::Container).then(|| {
                        record.is_some_and(|r| {
                            r.state == berth_engine::state::ContainerState::Running
                                && Some(&r.spec_hash) == last_good_hash.as_ref()
                        })
                    });
                    ObjectView {
                        kind: o.kind,
                        name: o.name.clone(),
                        hash,
                        last_good_hash,
                        state: record.map(|r| r.state.as_str().to_string()),
                        running_hash: record.map(|r| r.spec_hash.clone()),
                        running_last_good,
                    }
                })
                .collect();
            FileView {
                path,
                error: f.error.clone(),
                running_last_good: objects.iter().all(|o| o.running_last_good != Some(false)),
                objects,
            }
        })
        .collect();
    let listed: BTreeSet<_> = load.files.iter().map(|f| f.path.clone()).collect();
    ManifestsView {
        dir: dir.to_string(),
        loaded_at,
        files,
        problems: load
            .problems
            .iter()
            .filter(|p| !listed.contains(&p.file))
            .cloned()
            .collect(),
        prune_blocked: false,
    }
}

pub async fn get_manifests(State(state): State<Arc<ApiState>>) -> Response {
    let Some(seen) = state.last_load.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent has not loaded its manifests yet",
        );
    };
    let (last_good, records) = match (state.db.list_last_good(), state.db.list_containers()) {
        (Ok(g), Ok(r)) => (g, r),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "read the state db for /v1/manifests");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state database unavailable",
            );
        }
    };
    let dir = state.last_load.dir().display().to_string();
    let mut v = view(&dir, seen.at, &seen.load, &last_good, &records);
    v.prune_blocked = state.live.prune_blocked();
    Json(v).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::last_good::encode;
    use std::path::PathBuf;

    fn container(name: &str, args: &str) -> String {
        format!("apiVersion: berth/v1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: busybox:1.36\n  args: [{args}]\n")
    }

    fn record(name: &str, hash: &str, state: &str) -> ContainerRecord {
        ContainerRecord {
            id: format!("{name}-1"),
            source_file: format!("/m/{name}.yaml"),
            spec_hash: hash.into(),
            state: state.parse().unwrap(),
            ..crate::reconcile::fake_record(name)
        }
    }

    #[test]
    fn files_objects_errors_and_last_good() {
        let good_load = berth_spec::load_files(vec![
            (PathBuf::from("/m/a.yaml"), container("a", "x").into_bytes()),
            (PathBuf::from("/m/b.yaml"), container("b", "x").into_bytes()),
        ]);
        let rows: Vec<_> = good_load.objects.iter().map(|l| encode(l, 1)).collect();
        let (ha, hb) = (
            good_load.objects[0].hash.clone(),
            good_load.objects[1].hash.clone(),
        );
        let load = berth_spec::load_files(vec![
            (PathBuf::from("/m/a.yaml"), container("a", "x").into_bytes()),
            (
                PathBuf::from("/m/b.yaml"),
                container("b", "x").replace("args", "argz").into_bytes(),
            ),
        ]);
        let records = [record("a", &ha, "running"), record("b", &hb, "exited")];
        let v = view("/m", 7, &load, &rows, &records);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["dir"], "/m");
        assert_eq!(json["loadedAt"], 7);
        assert_eq!(json["problems"], serde_json::json!([]));
        let a = &json["files"][0];
        assert_eq!(a["path"], "/m/a.yaml");
        assert_eq!(a["error"], serde_json::Value::Null);
        assert_eq!(a["runningLastGood"], true);
        assert_eq!(a["objects"][0]["kind"], "Container");
        assert_eq!(a["objects"][0]["name"], "a");
        assert_eq!(a["objects"][0]["hash"], ha.as_str());
        assert_eq!(a["objects"][0]["lastGoodHash"], ha.as_str());
        assert_eq!(a["objects"][0]["runningLastGood"], true);
        let b = &json["files"][1];
        assert!(
            b["error"]
                .as_str()
                .unwrap()
                .starts_with("/m/b.yaml:6:3: Container/b: unknown field `spec.argz`"),
            "{b}"
        );
        assert_eq!(b["objects"][0]["hash"], serde_json::Value::Null);
        assert_eq!(b["objects"][0]["lastGoodHash"], hb.as_str());
        assert_eq!(b["objects"][0]["state"], "exited");
        assert_eq!(b["objects"][0]["runningLastGood"], false);
        assert_eq!(b["runningLastGood"], false);
    }

    #[test]
    fn a_file_that_names_nothing_shows_its_last_good_objects() {
        let good_load = berth_spec::load_files(vec![(
            PathBuf::from("/m/a.yaml"),
            container("a", "x").into_bytes(),
        )]);
        let rows: Vec<_> = good_load.objects.iter().map(|l| encode(l, 1)).collect();
        let load = berth_spec::load_files(vec![(PathBuf::from("/m/a.yaml"), b"spec: [".to_vec())]);
        assert_eq!(load.files[0].objects, []);
        let v = view(
            "/m",
            2,
            &load,
            &rows,
            &[record("a", &rows[0].spec_hash, "running")],
        );
        let a = &v.files[0].objects;
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].name.as_str(), a[0].hash.as_ref()), ("a", None));
        assert_eq!(a[0].last_good_hash.as_ref(), Some(&rows[0].spec_hash));
        assert_eq!(a[0].running_last_good, Some(true));
    }

    #[test]
    fn directory_problems_are_listed_apart() {
        let load = berth_spec::load_dir(std::path::Path::new("/nonexistent/berth-api-manifests"));
        let v = view("/nonexistent/berth-api-manifests", 1, &load, &[], &[]);
        assert_eq!(v.files, []);
        assert_eq!(v.problems.len(), 1);
        assert_eq!(v.problems[0].message, "manifest directory does not exist");
    }
}
