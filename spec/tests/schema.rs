//! The JSON Schema checked by an independent validator: Python's `jsonschema` (Debian
//! packages python3-jsonschema and python3-yaml) accepts every valid fixture and rejects
//! the invalid fixtures marked `# schema: reject`.

use std::path::Path;
use std::process::Command;

const CHECK: &str = r##"
import glob, json, os, sys
import jsonschema, yaml
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
root = sys.argv[2]
bad = []
for path in sorted(glob.glob(os.path.join(root, "valid", "*.yaml"))):
    for doc in yaml.safe_load_all(open(path)):
        if doc is None:
            continue
        for e in v.iter_errors(doc):
            bad.append(f"{path}: valid fixture rejected: {e.message} at {list(e.absolute_path)}")
checked = 0
for path in sorted(glob.glob(os.path.join(root, "invalid", "*.yaml"))):
    text = open(path, encoding="utf-8", errors="replace").read()
    if not text.startswith("# schema: reject"):
        continue
    checked += 1
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if all(v.is_valid(d) for d in docs):
        bad.append(f"{path}: invalid fixture accepted by the schema")
print(f"checked {checked} invalid fixtures")
if bad:
    print("\n".join(bad))
    sys.exit(1)
"##;

#[test]
fn python_jsonschema_agrees_with_the_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("berth.schema.json");
    std::fs::write(
        &schema_path,
        serde_json::to_string_pretty(&berth_spec::json_schema()).unwrap(),
    )
    .unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(CHECK)
        .arg(&schema_path)
        .arg(&fixtures)
        .output()
        .expect("this test needs python3 with jsonschema and yaml: apt-get install python3-jsonschema python3-yaml");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "this test needs python3-jsonschema and python3-yaml: {stderr}"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("checked 18 invalid fixtures"), "{stdout}");
}
