//! The running configuration: `live` renders a compiled snapshot into what the request path
//! reads, `store` holds the current one (lock-free), `manifests` loads and watches YAML files.

pub mod live;
pub mod manifests;
pub mod push;
pub mod store;

pub use live::{Live, LiveApp};
pub use store::ConfigStore;
