//! Pull benchmark: berth against podman (being written).
fn main() {}
