//! berth's embedded container engine: images, runtime (shim, namespaces, mounts), cgroups and
//! the agent's state database. All `unsafe` lives under [`sys`].

pub mod cgroups;
pub mod images;
pub mod network;
pub mod runtime;
pub mod state;
pub mod sys;
