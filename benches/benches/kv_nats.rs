//! placeholder until the kv_nats benchmark lands
fn main() {}
