//! The controllers. Each module owns one kind: its reconcile, its error policy and the wiring of
//! its watches. AccessApplication and AccessServiceToken.

pub mod application;
pub mod service_token;
