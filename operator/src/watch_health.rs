//! Whether the controllers' watches work, for `/healthz`: a replica whose watches have failed
//! for longer than a bound reports itself unhealthy, so that the kubelet restarts it.
//!
//! Why: kube-runtime's watcher retries a failing watch forever, with backoff. That is right for
//! a blip, but some failures do not end by retrying — after an API server restart, a server
//! whose etcd sends no progress notifications (KEP-1904) can answer every re-list with a
//! resource version its watch cache then calls too old (`410 Expired`), and the replica never
//! sees another edit while `/healthz` says `ok`. A fresh process lists anew and recovers
//! (docs/reliability.md, scenario 4). Pure bookkeeping over instants the caller passes (tests
//! use their own); no I/O, no clock of its own.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Errors further apart than this are separate incidents, not one failing watch. Larger than
/// the watcher's backoff cap (30 s, with jitter), so that a watch retried at the cap still
/// counts as one streak.
pub const QUIET: Duration = Duration::from_secs(60);

/// The streak of watch errors the controllers are in, if any. Shared by both controllers and
/// the admin server.
#[derive(Debug)]
pub struct WatchHealth {
    limit: Duration,
    streak: Mutex<Option<Streak>>,
}

#[derive(Debug, Clone)]
struct Streak {
    first: Instant,
    last: Instant,
    errors: u64,
    /// The last error's message: API server messages and resource names, never object data.
    last_error: String,
}

/// Why `/healthz` fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the controllers' watches have failed for {failing_for:?} ({errors} errors, none more than {quiet:?} apart; limit {limit:?}); \
     last error: {last_error}. A restart lists every resource anew"
)]
pub struct Unhealthy {
    pub failing_for: Duration,
    pub errors: u64,
    pub limit: Duration,
    pub quiet: Duration,
    pub last_error: String,
}

impl Unhealthy {
    /// A short, stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        "WatchesFailing"
    }
}

// === impl WatchHealth ===

impl WatchHealth {
    /// `limit`: how long errors may keep coming before the replica is unhealthy.
    pub fn new(limit: Duration) -> Self {
        WatchHealth { limit, streak: Mutex::new(None) }
    }

    /// Records one watch error seen at `now`.
    pub fn error(&self, now: Instant, error: &dyn std::fmt::Display) {
        let mut streak = self.lock();
        let last_error = error.to_string();
        match streak.as_mut() {
            Some(s) if now.saturating_duration_since(s.last) <= QUIET => {
                s.last = now;
                s.errors += 1;
                s.last_error = last_error;
            }
            _ => *streak = Some(Streak { first: now, last: now, errors: 1, last_error }),
        }
    }

    /// `Err` while the current streak of errors has lasted at least the limit; a quiet spell
    /// longer than [`QUIET`] ends the streak.
    pub fn check(&self, now: Instant) -> Result<(), Unhealthy> {
        let streak = self.lock();
        let Some(s) = streak.as_ref() else { return Ok(()) };
        let ongoing = now.saturating_duration_since(s.last) <= QUIET;
        let failing_for = s.last.saturating_duration_since(s.first);
        if ongoing && failing_for >= self.limit {
            return Err(Unhealthy {
                failing_for,
                errors: s.errors,
                limit: self.limit,
                quiet: QUIET,
                last_error: s.last_error.clone(),
            });
        }
        Ok(())
    }

    /// The data is a plain record; a panic while holding it cannot leave it half-written in a
    /// way that matters, so a poisoned lock is used as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Streak>> {
        self.streak.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(120);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn healthy_without_errors_and_after_a_blip() {
        let t0 = Instant::now();
        let h = WatchHealth::new(LIMIT);
        assert_eq!(h.check(t0), Ok(()));
        h.error(t0, &"connection refused");
        h.error(t0 + s(1), &"connection refused");
        assert_eq!(h.check(t0 + s(2)), Ok(()));
        assert_eq!(h.check(t0 + s(500)), Ok(()));
    }

    #[test]
    fn errors_that_keep_coming_past_the_limit_fail_until_a_quiet_spell() {
        let t0 = Instant::now();
        let h = WatchHealth::new(LIMIT);
        // A watch retried at the backoff cap: an error every 30 s.
        for i in 0..=4 {
            h.error(t0 + s(30 * i), &"410 Expired");
        }
        assert_eq!(
            h.check(t0 + s(120)),
            Err(Unhealthy {
                failing_for: s(120),
                errors: 5,
                limit: LIMIT,
                quiet: QUIET,
                last_error: "410 Expired".into(),
            })
        );
        assert_eq!(h.check(t0 + s(120)).unwrap_err().reason(), "WatchesFailing");
        // Still failing within QUIET of the last error; healthy once it has stayed quiet.
        assert!(h.check(t0 + s(120) + QUIET).is_err());
        assert_eq!(h.check(t0 + s(121) + QUIET), Ok(()));
        // A new error after the quiet spell starts a new, short streak.
        h.error(t0 + s(300), &"410 Expired");
        assert_eq!(h.check(t0 + s(300)), Ok(()));
    }

    #[test]
    fn the_message_says_what_to_do_and_what_failed() {
        let t0 = Instant::now();
        let h = WatchHealth::new(s(10));
        h.error(t0, &"first");
        h.error(t0 + s(10), &"ErrorResponse { code: 410, reason: \"Expired\" }");
        let text = h.check(t0 + s(10)).unwrap_err().to_string();
        assert!(text.contains("10s") && text.contains("2 errors") && text.contains("410"), "{text}");
        assert!(text.contains("restart"), "{text}");
    }

    proptest! {
        /// Against a model: unhealthy exactly when the errors, split wherever two are more than
        /// QUIET apart, end in a run lasting at least the limit whose last error is within
        /// QUIET of now.
        #[test]
        fn agrees_with_a_model(gaps in prop::collection::vec(0u64..100, 0..12), probe in 0u64..200) {
            let t0 = Instant::now();
            let h = WatchHealth::new(LIMIT);
            let mut at = 0u64;
            let mut times = Vec::new();
            for gap in gaps {
                at += gap;
                times.push(at);
                h.error(t0 + s(at), &"e");
            }
            let now = at + probe;
            let mut first = None;
            let mut last = None;
            for &t in &times {
                match last {
                    Some(l) if t - l <= QUIET.as_secs() => {}
                    _ => first = Some(t),
                }
                last = Some(t);
            }
            let expect_unhealthy = match (first, last) {
                (Some(f), Some(l)) => now - l <= QUIET.as_secs() && l - f >= LIMIT.as_secs(),
                _ => false,
            };
            prop_assert_eq!(h.check(t0 + s(now)).is_err(), expect_unhealthy);
        }
    }
}
