//! Parsing one YAML document into an `Object`, with every problem placed at file:line:col.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;

use crate::container::{ContainerSpec, NetworkMode};
use crate::document::Chunk;
use crate::guard::{Breach, Guard, Top, MAX_DEPTH, MAX_NODES};
use crate::network::NetworkSpec;
use crate::object::{
    Container, Kind, Metadata, Network, Object, ObjectRef, Volume, API_VERSION, PRUNE_DISABLED,
};
use crate::place::locate;
use crate::problem::{Problem, HINT_SEPARATOR};
use crate::suggest;
use crate::volume::VolumeSpec;

/// The outcome for one document.
#[derive(Debug)]
pub(crate) struct ParsedDoc {
    /// Kind and name, as far as they could be read.
    pub object_ref: Option<ObjectRef>,
    /// 1-based line and column of the document's first content.
    pub start: (usize, usize),
    /// The object with defaults applied, when the document has no problem.
    pub object: Option<Object>,
    pub problems: Vec<Problem>,
}

/// Only what is needed to name the document, read leniently.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "apiVersion")]
    api_version: Option<serde_yaml::Value>,
    kind: Option<serde_yaml::Value>,
    metadata: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Doc<S> {
    #[allow(dead_code)]
    api_version: IgnoredAny,
    #[allow(dead_code)]
    kind: IgnoredAny,
    metadata: Metadata,
    #[serde(default = "none")]
    spec: Option<S>,
}

fn none<S>() -> Option<S> {
    None
}

/// Kind and name from a header, when both are there.
fn header_ref(header: &Header) -> Option<ObjectRef> {
    let kind = header.kind.as_ref()?.as_str().and_then(Kind::parse)?;
    let name = header.metadata.as_ref()?.get("name")?.as_str()?;
    Some(ObjectRef::new(kind, name))
}

fn scalar_text(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Null => "null".to_string(),
        _ => "(not a scalar)".to_string(),
    }
}

/// Adds `offset` to every "line N column" in a serde_yaml/libyaml error text.
fn shift_lines(text: &str, offset: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("line ") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        match rest[..digits].parse::<usize>() {
            Ok(n) if rest[digits..].starts_with(" column") => {
                out.push_str(&(n + offset).to_string());
                rest = &rest[digits..];
            }
            _ => {}
        }
    }
    out.push_str(rest);
    out
}

struct Ctx<'a> {
    file: &'a Path,
    chunk: &'a Chunk<'a>,
    object_ref: Option<ObjectRef>,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn push(&mut self, pos: (usize, usize), text: &str) {
        self.problems.push(Problem::from_text(
            self.file.to_path_buf(),
            pos,
            self.object_ref.clone(),
            text,
        ));
    }

    fn yaml(&mut self, err: &serde_yaml::Error, breach: Option<Breach>) {
        let offset = self.chunk.line_offset;
        let pos = err
            .location()
            .map(|l| (l.line() + offset, l.column()))
            .unwrap_or(self.chunk.start);
        let mut text = shift_lines(&err.to_string(), offset);
        let primary = format!(" at line {} column {}", pos.0, pos.1);
        if let Some(i) = text.find(&primary) {
            text.replace_range(i..i + primary.len(), "");
        }
        let text = if breach == Some(Breach::Depth) || text.contains("recursion limit exceeded") {
            format!("yaml nesting is deeper than {MAX_DEPTH} levels{HINT_SEPARATOR}manifests need only a few levels; look for runaway brackets")
        } else if breach == Some(Breach::Nodes) || text.contains("repetition limit exceeded") {
            if self.chunk.text.contains('*') {
                format!("yaml aliases expand to more than {MAX_NODES} nodes (an alias bomb?){HINT_SEPARATOR}remove the anchors (&name) and aliases (*name) that repeat content")
            } else {
                format!("the document has more than {MAX_NODES} nodes{HINT_SEPARATOR}split it into smaller documents")
            }
        } else if let Some((line, column)) = indenting_tab(self.chunk.text) {
            format!(
                "{text}{HINT_SEPARATOR}a tab indents line {} (column {column}): YAML indents with spaces only",
                line + offset
            )
        } else {
            message_with_suggestion(&text)
        };
        self.push(pos, &text);
    }
}

/// The first tab in a line's indentation (1-based line and column), where YAML allows only
/// spaces: the usual cause of a document that does not parse after an editor's edit.
fn indenting_tab(text: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let indent = &line[..line.len() - line.trim_start().len()];
        indent
            .chars()
            .position(|c| c == '\t')
            .map(|col| (i + 1, col + 1))
    })
}

/// Turns serde's unknown field/variant errors into a message and a "did you mean" hint.
fn message_with_suggestion(text: &str) -> String {
    for marker in ["unknown field `", "unknown variant `", "missing field `"] {
        if let Some(i) = text.find(marker) {
            let path = text[..i].strip_suffix(": ").unwrap_or(".");
            return suggest::rewrite(path, &text[i..]);
        }
    }
    text.to_string()
}

pub(crate) fn parse_document(file: &Path, chunk: &Chunk<'_>) -> ParsedDoc {
    let mut ctx = Ctx {
        file,
        chunk,
        object_ref: None,
        problems: Vec::new(),
    };
    let object = parse_into(&mut ctx);
    ParsedDoc {
        object_ref: ctx.object_ref,
        start: chunk.start,
        object: if ctx.problems.is_empty() {
            object
        } else {
            None
        },
        problems: ctx.problems,
    }
}

fn parse_into(ctx: &mut Ctx<'_>) -> Option<Object> {
    let chunk = ctx.chunk;
    let guard = Guard::new();
    match guard.check(chunk.text) {
        Err(err) => {
            let breach = guard.breach.get();
            if breach.is_none() {
                // Not an abuse case, so reading the header is safe; it names the object.
                ctx.object_ref = serde_yaml::from_str::<Header>(chunk.text)
                    .ok()
                    .and_then(|h| header_ref(&h));
            }
            ctx.yaml(&err, breach);
            return None;
        }
        Ok(Top::Other(what)) => {
            ctx.push(
                chunk.start,
                &format!("a manifest document must be a mapping, found {what}{HINT_SEPARATOR}start it with apiVersion: {API_VERSION}, kind, metadata and spec"),
            );
            return None;
        }
        Ok(Top::Mapping) => {}
    }
    let header: Header = match serde_yaml::from_str(chunk.text) {
        Ok(h) => h,
        Err(err) => {
            ctx.yaml(&err, None);
            return None;
        }
    };
    let kind_text = header.kind.as_ref().map(scalar_text);
    let kind = kind_text.as_deref().and_then(Kind::parse);
    ctx.object_ref = header_ref(&header);
    let mut header_ok = true;
    match header.api_version.as_ref().map(scalar_text) {
        None => {
            ctx.push(
                chunk.start,
                &format!("missing apiVersion{HINT_SEPARATOR}add apiVersion: {API_VERSION}"),
            );
            header_ok = false;
        }
        Some(v) if v != API_VERSION => {
            ctx.push(
                locate(chunk, "apiVersion"),
                &format!("unsupported apiVersion `{v}`{HINT_SEPARATOR}berth reads apiVersion: {API_VERSION}"),
            );
            header_ok = false;
        }
        Some(_) => {}
    }
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let kind = match (kind, kind_text) {
        (Some(k), _) => k,
        (None, None) => {
            ctx.push(
                chunk.start,
                &format!(
                    "missing kind{HINT_SEPARATOR}add kind: one of {}",
                    kinds.join(", ")
                ),
            );
            return None;
        }
        (None, Some(text)) => {
            let hint = match suggest::closest(&text, &kinds) {
                Some(best) => format!("did you mean `{best}`? (one of {})", kinds.join(", ")),
                None => format!("write one of {}", kinds.join(", ")),
            };
            ctx.push(
                locate(chunk, "kind"),
                &format!("unknown kind `{text}`{HINT_SEPARATOR}{hint}"),
            );
            return None;
        }
    };
    if !header_ok {
        return None;
    }
    let object = match kind {
        Kind::Container => typed::<ContainerSpec>(ctx, kind).and_then(|(metadata, spec)| {
            let Some(mut spec) = spec else {
                ctx.push(
                    chunk.start,
                    &format!("missing field `spec`{HINT_SEPARATOR}a Container needs at least spec: {{image: ...}}"),
                );
                return None;
            };
            check_container(ctx, &metadata, &spec);
            spec.apply_defaults();
            Some(Object::Container(Container { metadata, spec }))
        }),
        Kind::Network => typed::<NetworkSpec>(ctx, kind).map(|(metadata, spec)| {
            let spec = spec.unwrap_or_default();
            if let Err(e) = spec.check() {
                let at = ["macvlan", "gateway"]
                    .into_iter()
                    .find(|k| e.contains(k))
                    .map_or(chunk.start, |k| locate(chunk, k));
                ctx.push(at, &e);
            }
            Object::Network(Network { metadata, spec })
        }),
        Kind::Volume => typed::<VolumeSpec>(ctx, kind).map(|(metadata, spec)| {
            Object::Volume(Volume {
                metadata,
                spec: spec.unwrap_or_default(),
            })
        }),
    }?;
    Some(object)
}

fn typed<S: DeserializeOwned>(ctx: &mut Ctx<'_>, kind: Kind) -> Option<(Metadata, Option<S>)> {
    match serde_yaml::from_str::<Doc<S>>(ctx.chunk.text) {
        Ok(doc) => {
            ctx.object_ref = Some(ObjectRef::new(kind, doc.metadata.name.clone()));
            check_annotations(ctx, &doc.metadata);
            Some((doc.metadata, doc.spec))
        }
        Err(err) => {
            ctx.yaml(&err, None);
            None
        }
    }
}

/// Annotations under `berth/` are berth's own: only the ones it implements are accepted.
fn check_annotations(ctx: &mut Ctx<'_>, metadata: &Metadata) {
    for (key, value) in &metadata.annotations {
        let Some(name) = key.strip_prefix("berth/") else {
            continue;
        };
        let problem = match name {
            "prune" if value == PRUNE_DISABLED => continue,
            "prune" => format!(
                "annotation berth/prune: `{value}` is not supported{HINT_SEPARATOR}write berth/prune: \"disabled\" to keep the object when its manifest goes, or remove it"
            ),
            _ => format!(
                "annotation `{key}` is not supported yet{HINT_SEPARATOR}berth knows berth/prune; other annotations must not start with berth/"
            ),
        };
        ctx.push(locate(ctx.chunk, key), &problem);
    }
}

fn hostname_error(h: &str) -> Option<String> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-');
    (!ok).then(|| format!("hostname `{h}` is not a valid host name{HINT_SEPARATOR}use letters, digits and '-', at most 63 characters"))
}

/// Checks between fields of a container, made after parsing (placed by key, best effort).
fn check_container(ctx: &mut Ctx<'_>, metadata: &Metadata, spec: &ContainerSpec) {
    let chunk = ctx.chunk;
    if spec.network_mode != NetworkMode::Bridge {
        let mode = serde_json::to_value(spec.network_mode).unwrap_or_default();
        let mode = mode.as_str().unwrap_or("host");
        if !spec.networks.is_empty() {
            ctx.push(locate(chunk, "networks"), &format!("networks only apply to networkMode bridge, not {mode}{HINT_SEPARATOR}remove networks or set networkMode: bridge"));
        }
        if spec.ports.iter().any(|p| p.host_port.is_some()) {
            ctx.push(locate(chunk, "ports"), &format!("ports are published only in networkMode bridge, not {mode}{HINT_SEPARATOR}remove hostPort from ports, or set networkMode: bridge"));
        }
        if spec.network_mode == NetworkMode::Host && spec.hostname.is_some() {
            ctx.push(locate(chunk, "hostname"), &format!("hostname cannot be set with networkMode host{HINT_SEPARATOR}the container shares the host's name; remove hostname"));
        }
    }
    if let Some(h) = &spec.hostname {
        if let Some(e) = hostname_error(h) {
            ctx.push(locate(chunk, "hostname"), &e);
        }
    }
    if let Some(dir) = &spec.working_dir {
        if !dir.starts_with('/') {
            ctx.push(locate(chunk, "workingDir"), &format!("workingDir `{dir}` is relative{HINT_SEPARATOR}write an absolute path, like /app"));
        }
    }
    if let Some(user) = &spec.user {
        if user.is_empty() || user.contains(char::is_whitespace) || user.matches(':').count() > 1 {
            ctx.push(locate(chunk, "user"), &format!("user `{user}` is not a user{HINT_SEPARATOR}write uid[:gid] or name[:group], like \"101:101\""));
        }
    }
    for key in spec.env.keys() {
        if key.is_empty() || key.contains(['=', '\0']) {
            ctx.push(locate(chunk, "env"), &format!("env name `{key}` is not valid{HINT_SEPARATOR}names are not empty and have no '='"));
        }
    }
    for key in spec.sysctls.keys() {
        let ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
        if !ok {
            ctx.push(locate(chunk, "sysctls"), &format!("sysctl `{key}` is not a sysctl name{HINT_SEPARATOR}write it like net.ipv4.ip_unprivileged_port_start"));
        }
    }
    let mut paths = BTreeSet::new();
    for m in &spec.mounts {
        if !paths.insert(m.path.clone()) {
            ctx.push(
                locate(chunk, "mounts"),
                &format!(
                    "two mounts at `{}`{HINT_SEPARATOR}mount each path once",
                    m.path.display()
                ),
            );
        }
    }
    let mut deps = BTreeSet::new();
    for d in &spec.depends_on {
        if d.name == metadata.name {
            ctx.push(
                locate(chunk, "dependsOn"),
                &format!(
                    "container depends on itself{HINT_SEPARATOR}remove `{}` from dependsOn",
                    d.name
                ),
            );
        } else if !deps.insert(d.name.clone()) {
            ctx.push(
                locate(chunk, "dependsOn"),
                &format!(
                    "dependsOn names `{}` twice{HINT_SEPARATOR}list each container once",
                    d.name
                ),
            );
        }
    }
    let update = &spec.update;
    if update.rollback_after <= update.min_ready {
        ctx.push(
            locate(chunk, "update"),
            &format!(
                "update.rollbackAfter {} must be longer than update.minReady {}{HINT_SEPARATOR}an update needs time to become ready before it is judged, like rollbackAfter: 5m",
                update.rollback_after, update.min_ready
            ),
        );
    }
    let mut nets = BTreeSet::new();
    for n in &spec.networks {
        if !nets.insert(n) {
            ctx.push(
                locate(chunk, "networks"),
                &format!("networks names `{n}` twice{HINT_SEPARATOR}list each network once"),
            );
        }
    }
}

/// The env files an object reads, for hashing.
pub(crate) fn env_files(object: &Object) -> &[PathBuf] {
    match object {
        Object::Container(c) => &c.spec.env_files,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::split;

    fn parse(text: &str) -> Vec<ParsedDoc> {
        split(text)
            .iter()
            .map(|c| parse_document(Path::new("m.yaml"), c))
            .collect()
    }

    fn one_problem(text: &str) -> String {
        let docs = parse(text);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].problems.len(), 1, "{:?}", docs[0].problems);
        docs[0].problems[0].to_string()
    }

    const WEB: &str = "apiVersion: berth/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  image: busybox:1.36\n";

    #[test]
    fn a_tab_in_the_indentation_is_named() {
        let text = "apiVersion: berth/v1\nkind: Container\nmetadata: {name: web}\nspec:\n\timage: busybox:1.36\n";
        let p = one_problem(text);
        assert!(
            p.contains("a tab indents line 5 (column 1): YAML indents with spaces only"),
            "{p}"
        );
        assert!(p.starts_with("m.yaml:5:"), "{p}");
    }

    #[test]
    fn shift_lines_moves_every_line_number() {
        assert_eq!(
            shift_lines(
                "did not find key at line 3 column 5, while parsing at line 1 column 1",
                10
            ),
            "did not find key at line 13 column 5, while parsing at line 11 column 1"
        );
        assert_eq!(shift_lines("a line 7 of text", 3), "a line 7 of text");
    }

    #[test]
    fn a_container_parses_with_defaults() {
        let docs = parse(WEB);
        let Some(Object::Container(c)) = &docs[0].object else {
            panic!("{:?}", docs[0]);
        };
        assert_eq!(c.metadata.name, "web");
        assert_eq!(c.spec.networks, ["default"]);
        assert_eq!(c.spec.stop_timeout.millis(), 10_000);
        assert_eq!(
            docs[0].object_ref,
            Some(ObjectRef::new(Kind::Container, "web"))
        );
    }

    #[test]
    fn header_problems() {
        let text = WEB.replace("berth/v1", "v1");
        assert_eq!(
            one_problem(&text),
            "m.yaml:1:1: Container/web: unsupported apiVersion `v1` (hint: berth reads apiVersion: berth/v1)"
        );
        let text = WEB.replace("kind: Container", "kind: Containr");
        assert_eq!(
            one_problem(&text),
            "m.yaml:2:1: unknown kind `Containr` (hint: did you mean `Container`? (one of Container, Network, Volume))"
        );
        assert_eq!(
            one_problem("kind: Volume\nmetadata: {name: v}\n"),
            "m.yaml:1:1: Volume/v: missing apiVersion (hint: add apiVersion: berth/v1)"
        );
        assert_eq!(
            one_problem("- a\n- b\n"),
            "m.yaml:1:1: a manifest document must be a mapping, found a list (hint: start it with apiVersion: berth/v1, kind, metadata and spec)"
        );
    }

    #[test]
    fn names_must_be_dns_labels() {
        let text = WEB.replace("{name: web}", "{name: Web_1}");
        assert_eq!(
            one_problem(&text),
            "m.yaml:3:18: Container/Web_1: metadata.name: name `Web_1` has uppercase letters (hint: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
        );
    }

    #[test]
    fn unknown_fields_point_at_the_absolute_line() {
        let text = format!("{WEB}---\n{WEB}  imagePullpolicy: Always\n");
        let docs = parse(&text);
        assert_eq!(docs.len(), 2);
        assert!(docs[0].object.is_some());
        assert_eq!(docs[1].problems.len(), 1);
        assert_eq!(
            docs[1].problems[0].to_string(),
            "m.yaml:12:3: Container/web: unknown field `spec.imagePullpolicy` (hint: did you mean `imagePullPolicy`?)"
        );
    }

    #[test]
    fn field_values_are_checked_where_they_are() {
        let text = format!("{WEB}  resources: {{memory: 64MB}}\n");
        assert_eq!(
            one_problem(&text),
            "m.yaml:6:23: Container/web: spec.resources.memory: invalid byte size `64MB` (hint: write a whole number of bytes or a number with a unit, like 512, 64Mi, 1.5Gi or 1G (Ki Mi Gi Ti Pi Ei are powers of 1024; k M G T P E of 1000))"
        );
        let text = format!("{WEB}  restartPolicy: always\n");
        assert_eq!(
            one_problem(&text),
            "m.yaml:6:18: Container/web: spec.restartPolicy: unknown value `always` (hint: did you mean `Always`? (one of Always, OnFailure, Never))"
        );
    }

    #[test]
    fn syntax_errors_have_absolute_places() {
        let text = format!("{WEB}---\napiVersion: berth/v1\nkind: [\n");
        let docs = parse(&text);
        assert_eq!(docs[1].problems.len(), 1);
        assert_eq!(
            docs[1].problems[0].to_string(),
            "m.yaml:9:1: did not find expected node content, while parsing a flow node"
        );
        let text = format!(
            "{WEB}---\napiVersion: berth/v1\nkind: Volume\nmetadata:\n  name: x\n bad: 1\n"
        );
        let docs = parse(&text);
        assert_eq!(
            docs[1].problems[0].to_string(),
            "m.yaml:11:2: did not find expected key, while parsing a block mapping at line 7 column 1"
        );
    }

    #[test]
    fn checks_between_fields() {
        let text = format!("{WEB}  networkMode: host\n  networks: [a]\n");
        assert_eq!(
            one_problem(&text),
            "m.yaml:7:3: Container/web: networks only apply to networkMode bridge, not host (hint: remove networks or set networkMode: bridge)"
        );
        let text = format!("{WEB}  dependsOn: [{{name: web}}]\n");
        assert_eq!(
            one_problem(&text),
            "m.yaml:6:3: Container/web: container depends on itself (hint: remove `web` from dependsOn)"
        );
        let net = "apiVersion: berth/v1\nkind: Network\nmetadata: {name: n}\nspec:\n  subnet: 10.0.0.0/24\n  gateway: 10.0.1.1\n";
        assert_eq!(
            one_problem(net),
            "m.yaml:6:3: Network/n: gateway 10.0.1.1 is outside subnet 10.0.0.0/24 (hint: pick an address inside the subnet, like 10.0.0.1)"
        );
    }
}
