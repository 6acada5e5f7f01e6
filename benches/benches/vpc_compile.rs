//! placeholder until the vpc_compile benchmark lands
fn main() {}
