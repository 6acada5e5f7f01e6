//! placeholder until the iam_sigv4 benchmark lands
fn main() {}
