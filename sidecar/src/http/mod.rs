//! The hyper glue: accepts connections, runs each request through the pure decisions, and
//! moves bytes to and from the app. It decides nothing itself.

pub mod body;
mod conn_timer;
pub mod forward;
pub mod handoff;
pub mod headers;
#[cfg(test)]
mod layers;
pub mod oidc_steps;
pub mod park;
pub mod phases;
pub mod pipeline;
pub mod proxy;
pub mod respond;
pub mod server;
mod service;
pub mod sign_in;
pub mod tls;
pub mod upstream;

pub use proxy::{Proxy, ProxySettings};
pub use server::serve;
