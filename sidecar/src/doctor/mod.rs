//! Diagnostics run against a deployment from outside, as a client would see it. `cors` holds
//! the pure Fetch analysis; `run` sends the requests. Nothing here reads the configuration:
//! what matters is what the browser receives.

pub mod cors;
pub mod run;
