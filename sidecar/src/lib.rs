//! portcullis-sidecar: the data plane that sits beside each app.
//!
//! `decide` holds the pure decisions (routing, CORS, authentication, policy) over a compiled
//! config; `http` is the hyper glue that moves bytes and calls them; `admin` serves health,
//! metrics and config; `config` keeps the live snapshot; `authz` answers other proxies'
//! external-authorization calls with the same decisions; `trace` exports
//! OpenTelemetry spans when configured. Nothing here talks to Kubernetes.

#![forbid(unsafe_code)]

pub mod admin;
pub mod authz;
pub mod cli;
pub mod config;
pub mod decide;
pub mod doctor;
pub mod explain;
pub mod http;
pub mod identity;
pub mod jwks;
pub mod metrics;
pub mod outbound;
pub mod run;
pub mod trace;
