//! placeholder until the kv benchmark lands
fn main() {}
