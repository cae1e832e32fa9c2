//! berth's embedded container engine: images, runtime (shim, namespaces, mounts), cgroups,
//! health probes and the agent's state database. All `unsafe` lives under [`sys`].

pub mod cgroups;
pub mod health;
pub mod images;
pub mod network;
pub mod runtime;
pub mod state;
pub mod sys;
