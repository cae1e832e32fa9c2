//! berth manifest types, directory loading, validation with file:line:col, defaults and the
//! canonical spec hash.
#![forbid(unsafe_code)]
