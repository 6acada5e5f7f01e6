//! Waiting for the store: capped exponential backoff, and retrying a step while its error says
//! the store is not ready yet (a node's start-up, the switch sync's start).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Capped exponential backoff between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits of `first`, doubling, at most `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            next: first,
            max,
        }
    }

    /// How a node waits for its store: 100 ms, doubling, at most 5 s.
    pub fn store() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The wait before the next attempt (each call doubles the following one, up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }

    /// Start again from the first wait (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Runs `attempt` until it succeeds, fails with an error `retry` does not accept, or fails at
/// or after `deadline` (`None`: no deadline); that error is returned. Each failure that is
/// retried is logged as a warning with its cause, then waited out with `backoff` (never past
/// the deadline).
pub async fn retry_while<T, E, Fut>(
    what: &str,
    deadline: Option<Instant>,
    mut backoff: Backoff,
    retry: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: Display,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let e = match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let now = Instant::now();
        if !retry(&e) || deadline.is_some_and(|d| now >= d) {
            return Err(e);
        }
        let mut delay = backoff.next_delay();
        if let Some(d) = deadline {
            delay = delay.min(d - now);
        }
        tracing::warn!(
            error = %e,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "{what}: the store is not ready; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::store();
        let waits: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(2))
    }

    /// Fails with `transient` errors `failures` times, then succeeds; counts the attempts.
    fn flaky(
        failures: u32,
        calls: &Cell<u32>,
    ) -> impl std::future::Future<Output = Result<u32, &'static str>> + '_ {
        calls.set(calls.get() + 1);
        let n = calls.get();
        async move {
            if n <= failures {
                Err("not ready")
            } else {
                Ok(n)
            }
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = Cell::new(0);
        let got = retry_while(
            "t",
            None,
            quick(),
            |e| *e == "not ready",
            || flaky(3, &calls),
        )
        .await;
        assert_eq!(got, Ok(4));
    }

    #[tokio::test]
    async fn other_errors_and_a_passed_deadline_end_it_at_once() {
        let calls = Cell::new(0);
        let got = retry_while("t", None, quick(), |_| false, || flaky(3, &calls)).await;
        assert_eq!((got, calls.get()), (Err("not ready"), 1));
        let calls = Cell::new(0);
        let past = Some(Instant::now());
        let got = retry_while("t", past, quick(), |_| true, || flaky(3, &calls)).await;
        assert_eq!((got, calls.get()), (Err("not ready"), 1));
    }
}
