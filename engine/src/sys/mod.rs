//! sys (work in progress)
