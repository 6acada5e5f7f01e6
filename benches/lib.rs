//! Benchmarks for the Hive crates live in `benches/benches/*.rs`; run them with
//! `cargo bench -p hive-benches --bench NAME`. This library is empty on purpose.
