//! synk keeps files and directory trees identical across many hosts over plain SSH.
//!
//! The client ([`sync`]) connects to every peer, asks each one's `synk --serve` ([`serve`]) to
//! [`scan`] the requested paths, decides per entry who holds the newest version ([`plan`]) and
//! carries it to every other peer with rsync or the built-in streaming copier ([`transfer`]).
//!
//! The modules form layers: none uses a module of a layer above its own, and no import cycle
//! runs between them, however long (`tests/layering.rs` keeps it so):
//!
//! 1. the ground floor: [`paths`] (paths as bytes), [`units`] (sizes, rates, times), [`names`]
//!    (the names synk owns in trees), [`model`] (what an entry, a version and a kept version
//!    are), [`atomic`] (files replaced whole), [`exclude`], [`install`];
//! 2. what describes, stores and decides: [`proto`] (the frames), [`state`] and [`versions`]
//!    (the stores), [`cache`] and [`scan`], [`plan`] (the decision), [`config`], [`report`]
//!    (everything the user is told);
//! 3. the two ends: [`serve`] on a peer; [`oplog`], [`ssh`], [`peer`], [`apply`],
//!    [`transfer`] and [`restore`] on the client;
//! 4. the top: [`cli`] (the command line) and [`sync`] (a run).

#![warn(missing_docs)]

pub mod apply;
pub mod atomic;
pub mod beneath;
pub mod cache;
pub mod cli;
pub mod config;
pub mod exclude;
pub mod extra;
pub mod install;
pub mod model;
pub mod names;
pub mod oplog;
pub mod os;
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
pub mod stop;
pub mod sync;
pub mod transfer;
pub mod units;
pub mod versions;
