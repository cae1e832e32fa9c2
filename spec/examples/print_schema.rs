//! Prints the manifest JSON Schema (the same as `berth schema`).
fn main() {
    println!("{:#}", berth_spec::json_schema());
}
