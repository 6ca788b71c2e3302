//! The one retry policy of every loop (binlog checks, the binlog reconnect, polling, the outbox drain, the
//! settle stage): exponential backoff from `min` doubling to `max`, with jitter (so validators restarted
//! together do not retry in step), reset after a success, and cut short when shutdown is asked. Delays
//! come from `backon`'s exponential backoff.

use crate::error::{Error, Result};
use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;
use tokio::sync::watch;

/// Delay bounds of a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub min: Duration,
    pub max: Duration,
}

impl Policy {
    /// Queries and deliveries: a lock wait or a broker hiccup clears up quickly.
    pub const QUERY: Policy = Policy { min: Duration::from_millis(100), max: Duration::from_secs(5) };
    /// Reconnecting a replica stream: a restarting server takes seconds.
    pub const RECONNECT: Policy = Policy { min: Duration::from_millis(200), max: Duration::from_secs(10) };
}

/// The delays of one loop, growing with each failure until [`Backoff::reset`].
pub struct Backoff {
    policy: Policy,
    delays: backon::ExponentialBackoff,
}

impl Backoff {
    pub fn new(policy: Policy) -> Backoff {
        Backoff { policy, delays: Self::delays(policy) }
    }

    fn delays(p: Policy) -> backon::ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(p.min)
            .with_max_delay(p.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// After a success: the next failure waits the shortest delay again.
    pub fn reset(&mut self) {
        self.delays = Self::delays(self.policy);
    }

    /// The next delay: at least `min`, at most `max`.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.policy.max).clamp(self.policy.min, self.policy.max)
    }

    /// Sleeps the next delay. False when shutdown is asked (before or during the wait).
    pub async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        if *shutdown.borrow() {
            return false;
        }
        let d = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(d) => !*shutdown.borrow(),
            _ = shutdown.changed() => false,
        }
    }
}

/// Runs `f` until it succeeds or fails definitely. A transient failure is logged (with `what`) and tried
/// again after the policy's next delay; shutdown asked meanwhile ends it with [`Error::Interrupted`].
pub async fn retry<T, F, Fut>(policy: Policy, shutdown: &watch::Receiver<bool>, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new(policy);
    let mut shutdown = shutdown.clone();
    loop {
        match f().await {
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                if !backoff.wait(&mut shutdown).await {
                    return Err(Error::Interrupted);
                }
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn transient() -> Error {
        Error::Stalled("test".into())
    }

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let p = Policy { min: Duration::from_millis(100), max: Duration::from_secs(1) };
        let mut b = Backoff::new(p);
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d.iter().all(|x| *x >= p.min && *x <= p.max), "{d:?}");
        assert!(d[0] < Duration::from_millis(200), "starts near min: {d:?}");
        assert_eq!(d[7], p.max, "capped: {d:?}");
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let (_tx, rx) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let got = retry(Policy::QUERY, &rx, "a test call", || async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 | 1 => Err(transient()),
                n => Ok(n),
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 2);
        assert!(started.elapsed() >= Duration::from_millis(300), "waited 100 ms and then 200 ms at least");
    }

    #[tokio::test(start_paused = true)]
    async fn definite_failures_return_at_once_and_shutdown_interrupts() {
        let (tx, rx) = watch::channel(false);
        let r: Result<()> =
            retry(Policy::QUERY, &rx, "a test call", || async { Err(Error::Config("bad".into())) }).await;
        assert!(matches!(r, Err(Error::Config(_))));
        let waiting = tokio::spawn(async move {
            retry(Policy::QUERY, &rx, "a test call", || async { Err::<(), _>(transient()) }).await
        });
        tokio::task::yield_now().await;
        tx.send(true).unwrap();
        assert!(matches!(waiting.await.unwrap(), Err(Error::Interrupted)));
    }
}
