//! tests live in tests/
