//! `berth schema`: the JSON Schema (draft 2020-12) of manifest documents, for editors.

/// The schema as pretty JSON, with a trailing newline.
pub fn render() -> String {
    let schema = berth_spec::json_schema();
    let mut text = serde_json::to_string_pretty(&schema).expect("a json value always serializes");
    text.push('\n');
    text
}

pub fn run() {
    print!("{}", render());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_spec_crates_schema() {
        let text = render();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, berth_spec::json_schema());
        assert_eq!(
            parsed["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(
            text.starts_with("{\n  \""),
            "pretty-printed: {}",
            &text[..20]
        );
    }
}
