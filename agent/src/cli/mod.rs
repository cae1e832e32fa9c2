//! The client-side commands: they read manifests or the running agent's API, never change it.

pub mod client;
pub mod events;
pub mod images;
pub mod inspect;
pub mod logs;
pub mod ls;
pub mod plan;
pub mod ps;
pub mod schema;
pub mod source;
pub mod stats;
pub mod status;
mod units;
pub mod validate;
