//! Field-level differences between two canonical objects, for `berth plan`: which fields make
//! a container be recreated, as dotted paths with compact values.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// One changed field. `old`/`new` are `None` when the field is absent on that side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// Dotted path from the document root: `spec.args`, `spec.ports[0].hostPort`,
    /// `metadata.labels["app.kubernetes.io/name"]`.
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

impl fmt::Display for FieldChange {
    /// `spec.args: ["a"] → ["b"]`; an absent side shows as `(none)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| {
            v.as_ref()
                .map_or_else(|| "(none)".to_string(), |v| v.to_string())
        };
        write!(
            f,
            "{}: {} → {}",
            self.path,
            show(&self.old),
            show(&self.new)
        )
    }
}

/// Every difference from `old` to `new`, in path order. Objects are compared key by key;
/// arrays of objects of the same length element by element; anything else (scalars, lists of
/// scalars such as `args`) as a whole value, because a one-word change in `args` reads best
/// as the whole old and new list.
pub fn diff(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    out
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Some(a), Some(b)) if a == b => {}
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(&join_key(path, k), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if a.len() == b.len() && a.iter().chain(b).all(Value::is_object) =>
        {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (None, None) => {}
        (a, b) => out.push(FieldChange {
            path: path.to_string(),
            old: a.cloned(),
            new: b.cloned(),
        }),
    }
}

/// `spec` + `args` → `spec.args`; keys that are not plain identifiers (labels, sysctls,
/// env names with dots or slashes) are quoted: `metadata.labels["app.kubernetes.io/name"]`.
fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, path.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{}]", Value::String(key.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shown(changes: &[FieldChange]) -> Vec<String> {
        changes.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn scalar_lists_change_as_a_whole() {
        let old = json!({"spec": {"image": "busybox:1.36", "args": ["sleep", "100"]}});
        let new = json!({"spec": {"image": "busybox:1.36", "args": ["sleep", "200"]}});
        assert_eq!(
            shown(&diff(&old, &new)),
            [r#"spec.args: ["sleep","100"] → ["sleep","200"]"#]
        );
    }

    #[test]
    fn added_removed_and_nested_fields_have_dotted_paths() {
        let old =
            json!({"spec": {"args": ["a"], "resources": {"memory": "64Mi"}, "env": {"A": "1"}}});
        let new = json!({"spec": {"command": ["sh"], "resources": {"memory": "128Mi", "pids": 10}, "env": {"A": "1"}}});
        assert_eq!(
            shown(&diff(&old, &new)),
            [
                r#"spec.args: ["a"] → (none)"#,
                r#"spec.command: (none) → ["sh"]"#,
                r#"spec.resources.memory: "64Mi" → "128Mi""#,
                "spec.resources.pids: (none) → 10",
            ]
        );
    }

    #[test]
    fn lists_of_objects_are_compared_by_index_when_their_length_holds() {
        let old =
            json!({"ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 443}]});
        let new =
            json!({"ports": [{"containerPort": 80, "hostPort": 8081}, {"containerPort": 443}]});
        assert_eq!(shown(&diff(&old, &new)), ["ports[0].hostPort: 8080 → 8081"]);
        let longer = json!({"ports": [{"containerPort": 80}]});
        let changes = diff(&old, &longer);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "ports");
        assert_eq!(changes[0].new, Some(json!([{"containerPort": 80}])));
    }

    #[test]
    fn odd_keys_are_quoted_and_equal_values_give_nothing() {
        let old = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}}});
        let new = json!({"metadata": {"labels": {"app.kubernetes.io/name": "api"}}});
        assert_eq!(
            shown(&diff(&old, &new)),
            [r#"metadata.labels["app.kubernetes.io/name"]: "web" → "api""#]
        );
        assert_eq!(diff(&old, &old), []);
    }
}
