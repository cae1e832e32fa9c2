//! An update in progress: the revision a container ran before, kept until the new one is
//! ready, so an update that never becomes ready can be put back (stored as JSON in its record).

use serde::{Deserialize, Serialize};

/// One revision of a container: its spec and the image it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub spec_hash: String,
    #[serde(default)]
    pub runtime_hash: Option<String>,
    pub spec_json: String,
    pub source_file: String,
    /// The image reference of the spec.
    pub image: String,
    /// The exact image it ran, so a rollback runs it again even if the tag moved.
    pub image_digest: Option<String>,
}

/// An update that has not proved itself yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// What ran before the update, and runs again if the update is rolled back.
    pub previous: Revision,
    /// Unix milliseconds when the update started.
    pub started_at_ms: u64,
}
