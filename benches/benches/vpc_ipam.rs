//! placeholder until the vpc_ipam benchmark lands
fn main() {}
