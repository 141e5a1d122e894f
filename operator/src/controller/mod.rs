//! The controllers. Each module owns one kind: its reconcile, its error policy and the wiring of
//! its watches. This slice has the AccessServiceToken controller.

pub mod service_token;
