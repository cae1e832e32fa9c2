//! The manifest objects: kinds, metadata and the `Object` sum of all kinds.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::container::ContainerSpec;
use crate::names::dns_label;
use crate::network::NetworkSpec;
use crate::volume::VolumeSpec;

/// The only `apiVersion` this crate reads.
pub const API_VERSION: &str = "berth/v1";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Kind {
    Container,
    Network,
    Volume,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Container, Kind::Network, Kind::Volume];

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Container => "Container",
            Kind::Network => "Network",
            Kind::Volume => "Volume",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kind and name, unique across a manifest directory. Displays as `Container/web`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct ObjectRef {
    pub kind: Kind,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// A DNS label, unique per kind.
    #[serde(deserialize_with = "dns_label")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `berth/prune: "disabled"` keeps an object when its manifest goes away.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The annotation that keeps an object when its manifest goes away.
pub const PRUNE_ANNOTATION: &str = "berth/prune";
/// Its one accepted value.
pub const PRUNE_DISABLED: &str = "disabled";

impl Metadata {
    pub fn named(name: impl Into<String>) -> Self {
        Metadata {
            name: name.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// `berth/prune: "disabled"`: berth keeps the object when its manifest goes away.
    pub fn prune_disabled(&self) -> bool {
        self.annotations.get(PRUNE_ANNOTATION).map(String::as_str) == Some(PRUNE_DISABLED)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub metadata: Metadata,
    pub spec: ContainerSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub metadata: Metadata,
    pub spec: NetworkSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub metadata: Metadata,
    pub spec: VolumeSpec,
}

/// One manifest document, with defaults applied.
///
/// Serializes as the full document (`apiVersion`, `kind`, `metadata`, `spec`).
// Not boxed: the agent matches and builds these directly, and a load holds only a few.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Container(Container),
    Network(Network),
    Volume(Volume),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Container(_) => Kind::Container,
            Object::Network(_) => Kind::Network,
            Object::Volume(_) => Kind::Volume,
        }
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Object::Container(c) => &c.metadata,
            Object::Network(n) => &n.metadata,
            Object::Volume(v) => &v.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(self.kind(), self.name())
    }

    /// The document as YAML, in canonical form (defaults written out).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("manifest objects always serialize to yaml")
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Object", 4)?;
        st.serialize_field("apiVersion", API_VERSION)?;
        st.serialize_field("kind", self.kind().as_str())?;
        st.serialize_field("metadata", self.metadata())?;
        match self {
            Object::Container(c) => st.serialize_field("spec", &c.spec)?,
            Object::Network(n) => st.serialize_field("spec", &n.spec)?,
            Object::Volume(v) => st.serialize_field("spec", &v.spec)?,
        }
        st.end()
    }
}
