//! One module per top-level command.

pub mod doctor;
pub mod iam;
pub mod init;
pub mod lab;
pub mod ovs;
pub mod vpc;
