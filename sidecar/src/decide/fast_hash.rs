//! The hasher of the per-request lookups in tables built from the config (routing's hosts, the
//! allowed origins): rustc's FxHash (the `rustc-hash` crate, rustc's own, maintained by the Rust
//! project) instead of std's SipHash, which cost ~200 instructions for a 14-byte host on every
//! request.
//!
//! Owns only the hash function. Must not be used for a table whose *keys* a client chooses: it is
//! unseeded, so a client could make keys collide. Here the keys come from the config and a client
//! only chooses what is looked up, which costs one hash and one probe whatever it sends.

use std::collections::HashMap;

/// A `HashMap` keyed by config values, looked up with request values.
pub type ConfigMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_lookups_work() {
        let mut m: ConfigMap<Box<str>, usize> = ConfigMap::default();
        let keys = ["", "a", "api.mysite.com", "exactly8", "exactly8!", "a.b.c.d.e.f.g.h.i.j.k.l.m"];
        for (i, k) in keys.iter().enumerate() {
            m.insert((*k).into(), i);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.get(*k), Some(&i), "{k:?}");
        }
        assert_eq!(m.get("api.mysite.co"), None);
        assert_eq!(m.get("api.mysite.comm"), None);
    }
}
