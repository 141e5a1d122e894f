//! Routing by host and path (skeleton; the routing work fills it in).
