//! Rebuilds the gateway when a file of the web client changes: `include_dir!`
//! reads `web/` at compile time, but Cargo does not know about those files
//! unless told here.

fn main() {
    println!("cargo:rerun-if-changed=web");
}
