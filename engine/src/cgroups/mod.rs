//! cgroups (work in progress)
