//! Pure decisions over the compiled config. Only `http` types and config go in; no hyper, no
//! tokio, no clock, no environment: time and the peer address are arguments.

pub mod authn;
pub mod client_headers;
pub mod client_ip;
pub mod cors;
pub mod fast_hash;
pub mod observe;
pub mod outcome;
pub mod policy;
pub mod refusal;
pub mod request;
pub mod route;
pub mod sign_in;
