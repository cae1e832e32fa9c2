//! What `GET /v1/source` says: where the manifests come from, which revision runs, when the
//! source last synced and why the last attempt did not apply, if it did not.

use std::path::PathBuf;
use std::sync::RwLock;

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `directory` or `git`.
    pub kind: &'static str,
    /// The manifest directory (`directory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The repository directories loaded, expanded for this host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The commit applied now (none before the first good sync).
    pub revision: Option<String>,
    /// Who signed it, when signatures are checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Unix seconds of the last sync that succeeded.
    pub synced_at: Option<u64>,
    /// Unix seconds of the last attempt.
    pub attempted_at: Option<u64>,
    /// Why the last attempt did not apply; the revision above stays.
    pub error: Option<String>,
}

/// The status, shared by the sync task (writer) and the API.
#[derive(Debug, Default)]
pub struct SharedStatus(RwLock<SourceStatus>);

impl SharedStatus {
    pub fn new(status: SourceStatus) -> SharedStatus {
        SharedStatus(RwLock::new(status))
    }

    pub fn get(&self) -> SourceStatus {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut self.0.write().unwrap_or_else(|p| p.into_inner()))
    }
}
