//! berth manifest types, directory loading, validation with file:line:col, defaults and the
//! canonical spec hash.
//!
//! The manifest format is `shared/design/MANIFESTS.md`: Kubernetes-shaped documents
//! (`apiVersion: berth/v1`, `kind`, `metadata`, `spec`) of the kinds `Container`, `Network`
//! and `Volume`, in `*.yaml`/`*.yml` files of one directory.
//!
//! - [`load_dir`] reads a directory as one snapshot (safe against git-sync and ConfigMap
//!   symlink swaps) and returns a [`LoadResult`]: the objects of the files without problems,
//!   a [`FileReport`] per file, and every [`Problem`] as `file:line:col: Kind/name: message
//!   (hint: …)`. A file with any problem contributes no objects, so the agent keeps its
//!   objects at their last good version. [`load_files`] does the same from memory.
//! - Every [`Loaded`] object has its defaults applied and a canonical spec hash: sha256 over
//!   [`HASH_SCHEMA_VERSION`], the sorted-key JSON of the object and the digests of its
//!   `envFiles`. Formatting, key order, comments and the file it lives in do not change it.
//! - Checks: unknown fields (with "did you mean"), typed values (quantities, durations,
//!   signals, capabilities, image references, ports, paths), names, duplicates across files,
//!   references (networks, volumes, `dependsOn` targets and cycles), host port conflicts, and
//!   YAML abuse (files over 1 MiB, non-UTF-8, alias bombs, nesting deeper than 64).
//!
//! This crate reads files and nothing else: no OS calls beyond that, no async runtime.
#![forbid(unsafe_code)]

mod container;
mod document;
mod duration;
mod guard;
mod hash;
mod healthcheck;
mod image;
mod load;
mod mount;
mod names;
mod network;
mod object;
mod parse;
mod place;
mod port;
mod problem;
mod quantity;
mod refs;
mod schema;
mod security;
mod signal;
mod suggest;
mod volume;

pub use container::{
    ContainerSpec, Dependency, DependencyCondition, Logging, NetworkMode, PullPolicy, Resources,
    RestartPolicy, Update, UpdateStrategy, DEFAULT_NETWORK,
};
pub use duration::{DurationError, DurationSpec};
pub use guard::{MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES};
pub use hash::{
    canonical_json, runtime_hash, sha256_digest, spec_hash, HASH_SCHEMA_VERSION, LIVE_FIELDS,
};
pub use healthcheck::{Healthcheck, HttpProbe, OnUnhealthy, Probe, TcpProbe};
pub use image::ImageRef;
pub use load::{
    is_manifest_name, load_dir, load_dirs, load_files, unavailable, FileReport, LoadResult, Loaded,
    Source,
};
pub use mount::{Device, DevicePermissions, Mount, MountSource, Tmpfs};
pub use names::dns_label_error;
pub use network::{Macvlan, MacvlanMode, NetworkDriver, NetworkSpec, Subnet, SubnetError};
pub use object::{
    Container, Kind, Metadata, Network, Object, ObjectRef, Volume, API_VERSION, PRUNE_ANNOTATION,
    PRUNE_DISABLED,
};
pub use port::{Port, Protocol};
pub use problem::Problem;
pub use quantity::{ByteSize, Cpus, QuantityError};
pub use schema::{json_schema, BYTE_SIZE_PATTERN, CPUS_PATTERN, DURATION_PATTERN};
pub use security::{Capability, CapabilityChanges, CapabilityError, Security};
pub use signal::{Signal, SignalError};
pub use volume::{ReclaimPolicy, VolumeSpec};
