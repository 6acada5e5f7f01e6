//! placeholder until the iam_policy benchmark lands
fn main() {}
