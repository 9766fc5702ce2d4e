//! synk keeps files and directory trees identical across many hosts over plain SSH.
//!
//! The client ([`sync`]) connects to every peer, asks each one's `synk --serve` ([`serve`]) to
//! [`scan`] the requested paths, decides per entry who holds the newest version ([`plan`]) and
//! carries it to every other peer with rsync or the built-in streaming copier ([`transfer`]).

pub mod apply;
pub mod atomic;
pub mod cache;
pub mod cli;
pub mod config;
pub mod exclude;
pub mod install;
pub mod model;
pub mod names;
pub mod oplog;
pub mod paths;
pub mod peer;
pub mod plan;
pub mod proto;
pub mod report;
pub mod restore;
pub mod scan;
pub mod serve;
pub mod ssh;
pub mod state;
pub mod sync;
pub mod transfer;
pub mod units;
pub mod versions;
