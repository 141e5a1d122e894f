//! hyper's timer for one HTTP/1.1 client connection: the header-read timeout on one tokio
//! `Sleep` that lives as long as the connection and is re-armed for each request head.
//!
//! hyper's HTTP/1 server asks its timer for one thing: the header-read deadline, armed in
//! `Conn::poll_read_head` (hyper 1.x, `proto/h1/conn.rs`) each time a request head is awaited.
//! With hyper-util's `TokioTimer` that is a new boxed tokio `Sleep` per request, entered into the
//! runtime's timer wheel when first polled and taken out again when hyper drops it after the
//! head is parsed: a lock each way and an allocation, ~1,100–1,400 instructions per request
//! (bench/README.md). Here every request re-arms the connection's one `Sleep`; moving a
//! registered deadline later is a compare-and-swap in tokio (`TimerEntry::reset`'s
//! `extend_expiration`), and only a deadline that already fired (a request that took longer
//! than the timeout) re-enters the wheel.
//!
//! This relies on hyper holding at most one header-read sleep at a time (its single
//! `h1_header_read_timeout_fut` slot, emptied before a new one is asked for), so every sleep it
//! holds may be the connection's one. Owns only timing; must not be shared between connections
//! (each would move the others' deadlines), nor used for HTTP/2 (whose keep-alive pings hold
//! their own sleeps: it keeps `TokioTimer`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioTimer;

/// The connection's header-read timer (clone it into the connection's builder).
#[derive(Clone)]
pub struct ConnTimer(Arc<Mutex<Pin<Box<tokio::time::Sleep>>>>);

impl ConnTimer {
    /// Unarmed: the `Sleep` enters the timer wheel when hyper first awaits a head.
    pub fn new() -> Self {
        // A deadline far enough never to fire before hyper arms it (tokio caps it further).
        let never = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        Self(Arc::new(Mutex::new(Box::pin(tokio::time::sleep_until(never)))))
    }

    fn arm(&self, deadline: Instant) {
        // Poisoned only if a poll panicked; the `Sleep` itself is still sound.
        let mut sleep = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sleep.as_mut().reset(deadline.into());
    }
}

impl Timer for ConnTimer {
    /// Not used by hyper's HTTP/1 server; an independent sleep, as `TokioTimer`'s.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.arm(deadline);
        Box::pin(Armed(self.0.clone()))
    }

    fn reset(&self, _sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        // The sleep hyper holds is the connection's one (module doc).
        self.arm(new_deadline);
    }

    /// tokio's clock, as `TokioTimer`'s: deadlines follow a paused test clock.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into()
    }
}

/// What hyper holds: the connection's `Sleep`, shared. Dropping it leaves the `Sleep` armed; a
/// deadline that passes while no head is awaited wakes the connection once, and nobody
/// reads it until hyper re-arms it for the next head.
struct Armed(Arc<Mutex<Pin<Box<tokio::time::Sleep>>>>);

impl Future for Armed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut sleep = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sleep.as_mut().poll(cx)
    }
}

impl Sleep for Armed {}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once(s: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        let waker = std::task::Waker::noop();
        s.as_mut().poll(&mut Context::from_waker(waker))
    }

    #[tokio::test(start_paused = true)]
    async fn each_arming_moves_the_one_deadline() {
        let timer = ConnTimer::new();
        let base = tokio::time::Instant::now();
        let mut first = timer.sleep_until((base + Duration::from_secs(10)).into());
        assert!(poll_once(&mut first).is_pending());
        tokio::time::advance(Duration::from_secs(5)).await;
        // The next head's deadline, later: the same sleep, moved.
        drop(first);
        let mut second = timer.sleep_until((base + Duration::from_secs(20)).into());
        tokio::time::advance(Duration::from_secs(6)).await; // 11 s: past the first deadline
        assert!(poll_once(&mut second).is_pending(), "the moved deadline, not the first");
        tokio::time::advance(Duration::from_secs(10)).await; // 21 s
        assert!(poll_once(&mut second).is_ready());
        // A deadline that fired is armed again for the next head (re-entering the wheel).
        let now = tokio::time::Instant::now();
        timer.reset(&mut second, (now + Duration::from_secs(10)).into());
        assert!(poll_once(&mut second).is_pending(), "re-armed after firing");
        tokio::time::advance(Duration::from_secs(3)).await;
        // An earlier deadline than the armed one counts too.
        let mut third = timer.sleep_until((now + Duration::from_secs(4)).into());
        assert!(poll_once(&mut third).is_pending());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(poll_once(&mut third).is_ready(), "the earlier deadline");
    }
}
