//! The hasher of the per-request lookups in tables built from the config (routing's hosts, the
//! allowed origins): FxHash's word-at-a-time multiply-rotate instead of std's SipHash, which cost
//! ~200 instructions for a 14-byte host on every request.
//!
//! Owns only the hash function. Must not be used for a table whose *keys* a client chooses: it is
//! unseeded, so a client could make keys collide. Here the keys come from the config and a client
//! only chooses what is looked up, which costs one hash and one probe whatever it sends.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by config values, looked up with request values.
pub type ConfigMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A `HashSet` of config values, looked up with request values.
pub type ConfigSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// FxHash (rustc's): eight bytes per multiply; the remainder in one more word.
#[derive(Clone, Copy, Default)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

// === impl FxHasher ===

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

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
