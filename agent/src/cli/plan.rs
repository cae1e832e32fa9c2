//! `berth plan [DIR]`: what the running agent would do if DIR were its manifest directory —
//! per object create, recreate (with the fields that changed), remove, keep or frozen — like
//! `terraform plan`. It loads DIR with the agent's loader, reads the agent's records through
//! `GET /v1/state`, and decides with the agent's own planner; it changes nothing.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_spec::LoadResult;

use super::client::Client;
use crate::api::plan::AgentState;
use crate::reconcile::last_good::decode_all;
use crate::reconcile::preview::{preview, PlanAction, PlanReport};
use crate::reconcile::Clock;

pub struct PlanArgs {
    /// The directory to plan; the agent's own manifest directory when `None`.
    pub dir: Option<PathBuf>,
    pub client: Client,
    pub json: bool,
    /// Exit 2 when the plan has changes.
    pub detailed_exitcode: bool,
}

/// Prints the plan; returns the exit code (0, or 2 for changes with `--detailed-exitcode`).
pub fn run(args: &PlanArgs) -> anyhow::Result<i32> {
    let body = args.client.get("/v1/state")?;
    let state: AgentState = serde_json::from_str(&body).with_context(|| {
        format!(
            "parse the state of the agent at {} (hint: is it the same berth version?)",
            args.client.endpoint
        )
    })?;
    let dir = args.dir.clone().unwrap_or_else(|| state.manifests.clone());
    let mut load = berth_spec::load_dir(&dir);
    // Planned as if DIR were the agent's directory: files keep their names, so an object of
    // a file that does not load matches the containers that file made.
    rebase(&mut load, &dir, &state.manifests);
    let (good, errors) = decode_all(&state.last_good);
    for e in errors {
        eprintln!("berth: warning: {e}");
    }
    let report = preview(
        &load,
        &good,
        &state.containers,
        &state.manifests.display().to_string(),
        Clock::system().now_ms(),
        state.allow_empty,
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serialize the plan")?
        );
    } else {
        print!("{}", render(&report));
    }
    Ok(if args.detailed_exitcode && report.has_changes() {
        2
    } else {
        0
    })
}

/// Rewrites every path of `load` under `from` to the same name under `to`.
pub fn rebase(load: &mut LoadResult, from: &Path, to: &Path) {
    if from == to {
        return;
    }
    let move_path = |p: &mut PathBuf| {
        if let Ok(rest) = p.strip_prefix(from) {
            *p = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
        }
    };
    for o in &mut load.objects {
        move_path(&mut o.source.file);
    }
    for f in &mut load.files {
        move_path(&mut f.path);
    }
    for p in &mut load.problems {
        move_path(&mut p.file);
    }
}

/// The plan as text, `terraform plan` style: `+` create, `~` recreate (with the changed
/// fields), `-` remove, `*` frozen; unchanged objects are only counted.
pub fn render(report: &PlanReport) -> String {
    let dir = Path::new(&report.dir);
    let rel = |file: &str| -> String {
        Path::new(file)
            .strip_prefix(dir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| file.to_string())
    };
    let mut out = String::new();
    if !report.problems.is_empty() {
        out.push_str(
            "Manifest problems (the objects of these files stay at their last good version):\n",
        );
        for p in &report.problems {
            let mut p = p.clone();
            p.file = PathBuf::from(rel(&p.file.display().to_string()));
            out.push_str(&format!("  {p}\n"));
        }
        out.push('\n');
    }
    let mut listed = false;
    for e in &report.entries {
        let sign = match e.action {
            PlanAction::Create => '+',
            PlanAction::Recreate | PlanAction::Update => '~',
            PlanAction::Remove => '-',
            PlanAction::Frozen => '*',
            PlanAction::Keep => continue,
        };
        listed = true;
        let file = e.file.as_deref().map(rel).unwrap_or_default();
        let why = match (e.action, &e.note) {
            (PlanAction::Remove, _) => format!("{file}: no manifest defines it any more"),
            (PlanAction::Frozen, Some(note)) => {
                note.replace(e.file.as_deref().unwrap_or("\0"), &file)
            }
            _ => file,
        };
        out.push_str(&format!("  {sign} {}/{}  ({why})\n", e.kind, e.name));
        for c in &e.changes {
            out.push_str(&format!("      {c}\n"));
        }
        if let Some(d) = &e.image_digest {
            let old = d.old.as_deref().unwrap_or("(unknown)");
            out.push_str(&format!("      image digest: {old} → {}\n", d.new));
        }
        if let (PlanAction::Recreate | PlanAction::Update, Some(note)) = (e.action, &e.note) {
            out.push_str(&format!("      ({note})\n"));
        }
    }
    if !listed {
        out.push_str("No changes: the agent's containers match the manifests.\n");
    }
    if !report.not_planned.is_empty() {
        let names: Vec<String> = report.not_planned.iter().map(|r| r.to_string()).collect();
        out.push_str(&format!(
            "\nNot in the plan (it covers containers; networks and volumes are converged directly): {}\n",
            names.join(", ")
        ));
    }
    let s = &report.summary;
    let frozen = if s.frozen > 0 {
        format!(", {} frozen", s.frozen)
    } else {
        String::new()
    };
    let update = if s.update > 0 {
        format!(", {} to update in place", s.update)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "\nPlan: {} to create, {} to recreate{update}, {} to remove, {} unchanged{frozen}.\n",
        s.create, s.recreate, s.remove, s.unchanged
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::diff::FieldChange;
    use crate::reconcile::preview::{DigestChange, PlanEntry, Summary};
    use berth_spec::{Kind, ObjectRef, Problem};
    use serde_json::json;

    fn entry(kind: Kind, name: &str, action: PlanAction, file: &str) -> PlanEntry {
        PlanEntry {
            kind,
            name: name.into(),
            action,
            file: Some(file.into()),
            old_hash: None,
            new_hash: None,
            changes: Vec::new(),
            image_digest: None,
            note: None,
        }
    }

    #[test]
    fn renders_like_terraform_plan() {
        let mut web = entry(Kind::Container, "web", PlanAction::Recreate, "/m/web.yaml");
        web.changes.push(FieldChange {
            path: "spec.args".into(),
            old: Some(json!(["a"])),
            new: Some(json!(["b"])),
        });
        web.image_digest = Some(DigestChange {
            old: Some("sha256:aa".into()),
            new: "sha256:bb".into(),
        });
        let mut db = entry(Kind::Container, "db", PlanAction::Frozen, "/m/db.yaml");
        db.note = Some("/m/db.yaml does not load: kept at its last good version".into());
        let report = PlanReport {
            dir: "/m".into(),
            entries: vec![
                entry(Kind::Container, "api", PlanAction::Create, "/m/api.yaml"),
                db,
                entry(Kind::Container, "keep", PlanAction::Keep, "/m/keep.yaml"),
                entry(Kind::Container, "old", PlanAction::Remove, "/m/old.yaml"),
                web,
            ],
            summary: Summary {
                update: 0,
                create: 1,
                recreate: 1,
                remove: 1,
                unchanged: 1,
                frozen: 1,
            },
            not_planned: vec![ObjectRef::new(Kind::Network, "front")],
            problems: vec![Problem {
                file: "/m/db.yaml".into(),
                line: 3,
                column: 1,
                object: Some(ObjectRef::new(Kind::Container, "db")),
                message: "unknown field `x`".into(),
                hint: None,
            }],
        };
        assert_eq!(
            render(&report),
            "Manifest problems (the objects of these files stay at their last good version):\n\
             \x20 db.yaml:3:1: Container/db: unknown field `x`\n\
             \n\
             \x20 + Container/api  (api.yaml)\n\
             \x20 * Container/db  (db.yaml does not load: kept at its last good version)\n\
             \x20 - Container/old  (old.yaml: no manifest defines it any more)\n\
             \x20 ~ Container/web  (web.yaml)\n\
             \x20     spec.args: [\"a\"] → [\"b\"]\n\
             \x20     image digest: sha256:aa → sha256:bb\n\
             \n\
             Not in the plan (it covers containers; networks and volumes are converged directly): Network/front\n\
             \n\
             Plan: 1 to create, 1 to recreate, 1 to remove, 1 unchanged, 1 frozen.\n"
        );
    }

    #[test]
    fn nothing_to_do_says_so() {
        let report = PlanReport {
            dir: "/m".into(),
            entries: vec![entry(
                Kind::Container,
                "keep",
                PlanAction::Keep,
                "/m/keep.yaml",
            )],
            summary: Summary {
                unchanged: 1,
                ..Summary::default()
            },
            not_planned: Vec::new(),
            problems: Vec::new(),
        };
        assert_eq!(
            render(&report),
            "No changes: the agent's containers match the manifests.\n\nPlan: 0 to create, 0 to recreate, 0 to remove, 1 unchanged.\n"
        );
        assert!(!report.has_changes());
    }

    #[test]
    fn rebase_moves_every_path_under_the_agents_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: berth/v1\nkind: Volume\nmetadata: {name: v}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.yaml"), "kind: [").unwrap();
        let mut load = berth_spec::load_dir(dir.path());
        rebase(&mut load, dir.path(), Path::new("/etc/berth/manifests.d"));
        let files: Vec<String> = load
            .files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        assert_eq!(
            files,
            [
                "/etc/berth/manifests.d/a.yaml",
                "/etc/berth/manifests.d/b.yaml"
            ]
        );
        assert_eq!(
            load.objects[0].source.file,
            Path::new("/etc/berth/manifests.d/a.yaml")
        );
        assert!(
            load.problems
                .iter()
                .all(|p| p.file == Path::new("/etc/berth/manifests.d/b.yaml")),
            "{:?}",
            load.problems
        );
    }
}
