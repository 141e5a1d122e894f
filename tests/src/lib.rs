//! End-to-end tests of Portcullis over real processes and sockets live in `tests/`; this
//! library is intentionally empty.
