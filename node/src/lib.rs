//! The floe node crate: the `floe` command line and, as it grows, the daemon that drives the protocol core.
//!
//! Modules here do IO (files, network, clocks) around `floe-protocol`; protocol decisions stay there.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod budget;
pub mod cache;
pub mod client;
pub mod daemon;
pub mod devnet;
pub(crate) mod drive;
pub mod gateway;
pub mod metrics;
pub mod nat;
pub mod net;
pub mod recent;
pub mod repair;
pub mod service;
pub mod site;
pub mod site_name;
pub mod site_publish;
pub mod sliver_files;
pub mod spool;
pub mod steward_state;
pub mod store;
pub mod stream_put;
