//! images (work in progress)
