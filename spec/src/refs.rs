//! Checks across objects: references to networks, volumes and containers exist,
//! `dependsOn` has no cycle, and no two published ports claim the same host socket.

use std::collections::{BTreeMap, BTreeSet};

use crate::container::{DependencyCondition, DEFAULT_NETWORK};
use crate::document::Chunk;
use crate::load::FileEntry;
use crate::mount::MountSource;
use crate::object::{Kind, Object, ObjectRef};
use crate::place::{locate, locate_after};
use crate::port::Port;
use crate::problem::HINT_SEPARATOR;

/// A place of a document: file index and document index.
type At = (usize, usize);

fn chunk_of(files: &[FileEntry], (f, d): At) -> Chunk<'_> {
    let doc = &files[f].docs[d];
    Chunk {
        text: &doc.text,
        line_offset: doc.line_offset,
        start: doc.start,
    }
}

fn place(files: &[FileEntry], at: At) -> String {
    let doc = &files[at.0].docs[at.1];
    format!(
        "{}:{}:{}",
        files[at.0].path.display(),
        doc.start.0,
        doc.start.1
    )
}

pub(crate) fn check(files: &mut [FileEntry]) {
    // Every object any file names counts as existing, even when its file is invalid: the
    // agent keeps that object at its last good version, so the reference still holds.
    let mut known: BTreeSet<ObjectRef> = BTreeSet::new();
    let mut containers: BTreeMap<String, At> = BTreeMap::new();
    for (f, file) in files.iter().enumerate() {
        for (d, doc) in file.docs.iter().enumerate() {
            if let Some(r) = &doc.object_ref {
                known.insert(r.clone());
            }
            if let Some(Object::Container(c)) = &doc.object {
                containers.entry(c.metadata.name.clone()).or_insert((f, d));
            }
        }
    }
    let mut found: Vec<(At, (usize, usize), String)> = Vec::new();
    for &at in containers.values() {
        let Some(Object::Container(c)) = &files[at.0].docs[at.1].object else {
            continue;
        };
        let chunk = chunk_of(files, at);
        for net in &c.spec.networks {
            if net != DEFAULT_NETWORK
                && !known.contains(&ObjectRef::new(Kind::Network, net.clone()))
            {
                found.push((at, locate_after(&chunk, "networks", net), format!(
                    "network `{net}` does not exist{HINT_SEPARATOR}define a Network named {net}, or use the built-in network `{DEFAULT_NETWORK}`"
                )));
            }
        }
        for m in &c.spec.mounts {
            if let MountSource::Volume(v) = &m.source {
                if !known.contains(&ObjectRef::new(Kind::Volume, v.clone())) {
                    found.push((
                        at,
                        locate_after(&chunk, "mounts", v),
                        format!(
                            "volume `{v}` does not exist{HINT_SEPARATOR}define a Volume named {v}"
                        ),
                    ));
                }
            }
        }
        for dep in &c.spec.depends_on {
            let target = ObjectRef::new(Kind::Container, dep.name.clone());
            if !known.contains(&target) {
                found.push((at, locate_after(&chunk, "dependsOn", &dep.name), format!(
                    "dependsOn names `{}`, which does not exist{HINT_SEPARATOR}define a Container named {} or remove it from dependsOn",
                    dep.name, dep.name
                )));
                continue;
            }
            if dep.condition == DependencyCondition::Healthy {
                if let Some(&t) = containers.get(&dep.name) {
                    if let Some(Object::Container(tc)) = &files[t.0].docs[t.1].object {
                        if tc.spec.healthcheck.is_none() {
                            found.push((at, locate_after(&chunk, "dependsOn", &dep.name), format!(
                                "dependsOn waits for `{}` to be Healthy, but it has no healthcheck{HINT_SEPARATOR}add a healthcheck to {}, or use condition: Started",
                                dep.name, dep.name
                            )));
                        }
                    }
                }
            }
        }
    }
    found.extend(cycles(files, &containers));
    found.extend(port_conflicts(files, &containers));
    for ((f, d), pos, text) in found {
        let object = files[f].docs[d].object_ref.clone();
        files[f].problem(pos, object, &text);
    }
}

/// Each `dependsOn` cycle, reported on every container in it.
fn cycles(
    files: &[FileEntry],
    containers: &BTreeMap<String, At>,
) -> Vec<(At, (usize, usize), String)> {
    let deps = |name: &str| -> Vec<String> {
        let Some(&at) = containers.get(name) else {
            return Vec::new();
        };
        match &files[at.0].docs[at.1].object {
            Some(Object::Container(c)) => c
                .spec
                .depends_on
                .iter()
                .map(|d| d.name.clone())
                .filter(|n| n != name && containers.contains_key(n))
                .collect(),
            _ => Vec::new(),
        }
    };
    // Iterative depth-first search; 0 = unseen, 1 = on the stack, 2 = done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut out = Vec::new();
    for root in containers.keys() {
        if state.get(root.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut stack: Vec<(String, Vec<String>)> = vec![(root.clone(), deps(root))];
        state.insert(root.as_str(), 1);
        while let Some((node, next)) = stack.last_mut() {
            let Some(child) = next.pop() else {
                let node = node.clone();
                stack.pop();
                let key = containers
                    .get_key_value(&node)
                    .map(|(k, _)| k.as_str())
                    .unwrap_or("");
                state.insert(key, 2);
                continue;
            };
            let key = containers
                .get_key_value(&child)
                .map(|(k, _)| k.as_str())
                .unwrap_or("");
            match state.get(key).copied().unwrap_or(0) {
                0 => {
                    state.insert(key, 1);
                    let d = deps(&child);
                    stack.push((child, d));
                }
                1 => {
                    let from = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|(n, _)| n.clone()).collect();
                    // Report each cycle once, however it was entered.
                    let mut canon = cycle.clone();
                    let min = (0..canon.len()).min_by_key(|&i| &canon[i]).unwrap_or(0);
                    canon.rotate_left(min);
                    if reported.insert(canon.clone()) {
                        cycle = canon;
                        let mut shown = cycle.clone();
                        shown.push(cycle[0].clone());
                        let text = format!(
                            "dependsOn cycle: {}{HINT_SEPARATOR}remove one of these dependencies",
                            shown.join(" → ")
                        );
                        for n in &cycle {
                            let at = containers[n];
                            let chunk = chunk_of(files, at);
                            out.push((at, locate(&chunk, "dependsOn"), text.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Published ports that claim the same host address, port and protocol.
fn port_conflicts(
    files: &[FileEntry],
    containers: &BTreeMap<String, At>,
) -> Vec<(At, (usize, usize), String)> {
    let mut published: Vec<(&str, At, &Port)> = Vec::new();
    for (name, &at) in containers {
        if let Some(Object::Container(c)) = &files[at.0].docs[at.1].object {
            for p in c.spec.ports.iter().filter(|p| p.host_port.is_some()) {
                published.push((name, at, p));
            }
        }
    }
    let mut out = Vec::new();
    for (i, (a_name, a_at, a)) in published.iter().enumerate() {
        for (b_name, b_at, b) in published.iter().skip(i + 1) {
            if !a.conflicts_with(b) {
                continue;
            }
            let port = a.host_port.unwrap_or_default();
            let proto = a.protocol.as_str();
            let needle = port.to_string();
            if a_name == b_name {
                let chunk = chunk_of(files, *a_at);
                out.push((*a_at, locate_after(&chunk, "ports", &needle), format!(
                    "host port {port}/{proto} is published twice ({} and {}){HINT_SEPARATOR}publish each host port once",
                    a.host_ip, b.host_ip
                )));
                continue;
            }
            for ((at, ip), (other, other_at, other_ip)) in [
                ((*a_at, a.host_ip), (b_name, *b_at, b.host_ip)),
                ((*b_at, b.host_ip), (a_name, *a_at, a.host_ip)),
            ] {
                let chunk = chunk_of(files, at);
                out.push((at, locate_after(&chunk, "ports", &needle), format!(
                    "host port {port}/{proto} on {ip} is also published by Container/{other} on {other_ip} ({}){HINT_SEPARATOR}pick another hostPort or hostIP",
                    place(files, other_at)
                )));
            }
        }
    }
    out
}
