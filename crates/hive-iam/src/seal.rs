//! (filled by the hive-iam work; see the crate docs.)
