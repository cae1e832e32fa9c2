//! What the API never shows: the values of containers' environment variables, where secrets
//! live. Their names are shown; every value is replaced by [`HIDDEN`], in the container records
//! and last good objects of `GET /v1/state` and in the field changes of a plan.

use serde_json::Value;

use crate::reconcile::diff::FieldChange;

/// What stands in for a hidden value.
pub const HIDDEN: &str = "(not shown)";

/// Hides the env values of a container spec (`{"image": …, "env": {…}}`).
pub fn hide_env(spec: &mut Value) {
    if let Some(env) = spec.get_mut("env").and_then(Value::as_object_mut) {
        for v in env.values_mut() {
            *v = Value::String(HIDDEN.to_string());
        }
    }
}

/// Hides the env values of a whole object (`{"kind": …, "spec": {…}}`).
pub fn hide_object_env(object: &mut Value) {
    if let Some(spec) = object.get_mut("spec") {
        hide_env(spec);
    }
}

/// Whether any env value of the spec is already hidden (a spec read from `GET /v1/state`).
pub fn env_hidden(spec: &Value) -> bool {
    spec.get("env")
        .and_then(Value::as_object)
        .is_some_and(|env| env.values().any(|v| v == HIDDEN))
}

/// A container spec as JSON text, its env values hidden; text that is not JSON is dropped.
pub fn spec_json(text: &str) -> String {
    rewrite(text, hide_env)
}

/// An object as JSON text, its env values hidden.
pub fn object_json(text: &str) -> String {
    rewrite(text, hide_object_env)
}

fn rewrite(text: &str, hide: fn(&mut Value)) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            hide(&mut v);
            v.to_string()
        }
        Err(_) => "{}".to_string(),
    }
}

fn is_env_path(path: &str) -> bool {
    path == "spec.env" || path.starts_with("spec.env.") || path.starts_with("spec.env[")
}

/// Hides the values of changed env variables (the change and the name stay visible).
pub fn hide_changes(changes: &mut [FieldChange]) {
    for c in changes.iter_mut().filter(|c| is_env_path(&c.path)) {
        for side in [&mut c.old, &mut c.new] {
            match side {
                Some(Value::Object(env)) => {
                    for v in env.values_mut() {
                        *v = Value::String(HIDDEN.to_string());
                    }
                }
                Some(v) => *v = Value::String(HIDDEN.to_string()),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_values_go_and_names_stay() {
        let text = r#"{"image":"busybox","env":{"TOKEN":"s3cret","MODE":"prod"},"envFiles":["/etc/x.env"]}"#;
        let shown: Value = serde_json::from_str(&spec_json(text)).unwrap();
        assert_eq!(
            shown,
            json!({"image": "busybox", "env": {"TOKEN": HIDDEN, "MODE": HIDDEN}, "envFiles": ["/etc/x.env"]})
        );
        assert!(env_hidden(&shown));
        let object = r#"{"kind":"Container","spec":{"env":{"TOKEN":"s3cret"}}}"#;
        assert!(!object_json(object).contains("s3cret"));
        assert_eq!(spec_json("not json"), "{}");
    }

    #[test]
    fn changed_env_values_are_hidden_in_plans() {
        let old = json!({"spec": {"env": {"A": "old-secret"}, "args": ["x"]}});
        let new = json!({"spec": {"env": {"A": "new-secret", "B": "b-secret"}, "args": ["y"]}});
        let mut changes = crate::reconcile::diff::diff(&old, &new);
        hide_changes(&mut changes);
        let shown: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                r#"spec.args: ["x"] → ["y"]"#.to_string(),
                format!("spec.env.A: \"{HIDDEN}\" → \"{HIDDEN}\""),
                format!("spec.env.B: (none) → \"{HIDDEN}\""),
            ]
        );
        let whole = json!({"spec": {}});
        let mut added = crate::reconcile::diff::diff(&whole, &new);
        hide_changes(&mut added);
        assert!(!format!("{added:?}").contains("secret"), "{added:?}");
    }
}
