//! The JSON Schema (draft 2020-12) of manifest documents, for editors and `berth schema`.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use crate::container::ContainerSpec;
use crate::duration::DurationSpec;
use crate::network::{NetworkSpec, Subnet};
use crate::object::{Kind, Metadata, API_VERSION};
use crate::quantity::{ByteSize, Cpus};
use crate::security::Capability;
use crate::signal::Signal;
use crate::volume::VolumeSpec;

/// Byte sizes as the loader reads them: `512`, `64Mi`, `1.5Gi`, `1G`.
pub const BYTE_SIZE_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$";
/// CPU amounts: `2`, `0.5`, `500m`.
pub const CPUS_PATTERN: &str = r"^([0-9]+(\.[0-9]{1,3})?|[0-9]+m)$";
/// Durations: `500ms`, `10s`, `1m30s`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "bytes: a whole number, or a number with a unit like 64Mi, 1.5Gi or 1G",
            "oneOf": [
                {"type": "string", "pattern": BYTE_SIZE_PATTERN},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

impl JsonSchema for Cpus {
    fn schema_name() -> Cow<'static, str> {
        "Cpus".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "cpu cores, like 2, 0.5 or 500m",
            "oneOf": [
                {"type": "string", "pattern": CPUS_PATTERN},
                {"type": "number", "exclusiveMinimum": 0}
            ]
        })
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a duration like 500ms, 10s, 5m, 1h or 1m30s",
            "type": "string",
            "pattern": DURATION_PATTERN
        })
    }
}

impl JsonSchema for Signal {
    fn schema_name() -> Cow<'static, str> {
        "Signal".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a signal name like SIGTERM (or TERM), or its number",
            "oneOf": [
                {"type": "string", "pattern": "^([Ss][Ii][Gg])?[A-Za-z][A-Za-z0-9]*$"},
                {"type": "integer", "minimum": 1, "maximum": 31}
            ]
        })
    }
}

impl JsonSchema for Capability {
    fn schema_name() -> Cow<'static, str> {
        "Capability".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a Linux capability like NET_ADMIN or CAP_NET_ADMIN, or ALL",
            "type": "string",
            "pattern": "^([Cc][Aa][Pp]_)?[A-Za-z_]+$"
        })
    }
}

impl JsonSchema for Subnet {
    fn schema_name() -> Cow<'static, str> {
        "Subnet".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a network in CIDR form, like 10.89.1.0/24",
            "type": "string",
            "pattern": "^[0-9A-Fa-f:.]+/[0-9]{1,3}$"
        })
    }
}

/// Schema of map values that may be written as strings, integers or booleans.
pub(crate) struct ScalarString;

impl JsonSchema for ScalarString {
    fn schema_name() -> Cow<'static, str> {
        "ScalarString".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "integer", "boolean"]})
    }
}

fn document(kind: Kind, metadata: &Schema, spec: Schema, spec_required: bool) -> Value {
    let mut required = vec!["apiVersion", "kind", "metadata"];
    if spec_required {
        required.push("spec");
    }
    json!({
        "title": kind.as_str(),
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind.as_str()},
            "metadata": metadata,
            "spec": spec,
        }
    })
}

/// A JSON Schema (draft 2020-12) of every kind: one document is `oneOf` the kinds.
pub fn json_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let metadata = generator.subschema_for::<Metadata>();
    let container = generator.subschema_for::<ContainerSpec>();
    let network = generator.subschema_for::<NetworkSpec>();
    let volume = generator.subschema_for::<VolumeSpec>();
    let definitions = generator.take_definitions(true);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://berth.dev/schema/berth-v1.json",
        "title": "berth manifest",
        "description": "One document of a berth manifest file (apiVersion berth/v1).",
        "oneOf": [
            document(Kind::Container, &metadata, container, true),
            document(Kind::Network, &metadata, network, false),
            document(Kind::Volume, &metadata, volume, false),
        ],
        "$defs": definitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_every_kind_and_typed_quantities() {
        let s = json_schema();
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        let kinds: Vec<&str> = s["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["properties"]["kind"]["const"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Container", "Network", "Volume"]);
        let defs = &s["$defs"];
        assert_eq!(defs["ByteSize"]["oneOf"][0]["pattern"], BYTE_SIZE_PATTERN);
        assert_eq!(defs["Duration"]["pattern"], DURATION_PATTERN);
        let spec = &defs["ContainerSpec"];
        assert_eq!(spec["additionalProperties"], false);
        assert_eq!(spec["required"], json!(["image"]));
        assert!(spec["properties"]["imagePullPolicy"].is_object(), "{spec}");
        assert!(defs["Mount"]["oneOf"].is_array(), "{}", defs["Mount"]);
        // Every $ref points at a definition that exists.
        let text = s.to_string();
        for part in text.split("\"$ref\":\"#/$defs/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(defs.get(name).is_some(), "dangling $ref {name}");
        }
    }
}
