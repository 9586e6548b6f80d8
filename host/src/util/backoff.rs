//! The one backoff policy: waits that double from a first wait up to a
//! cap, each drawn at random from its upper half (jitter, so callers that
//! failed together do not retry together). The AWS SDK's own retries take
//! their first wait and cap from [`RETRY`] too.

use std::time::Duration;

/// Exponential backoff with jitter and a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The longest wait before the first retry.
    pub first: Duration,
    /// The longest wait ever.
    pub cap: Duration,
}

/// The policy of every retry loop in pipehost: 50 ms doubling up to 5 s.
pub const RETRY: Backoff = Backoff {
    first: Duration::from_millis(50),
    cap: Duration::from_secs(5),
};

impl Backoff {
    /// The longest wait before retry `attempt` (0 for the first retry):
    /// `first · 2^attempt`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap)
    }

    /// The wait before retry `attempt`: at random in the upper half of
    /// its [`ceiling`](Self::ceiling).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ms = self.ceiling(attempt).as_millis().max(1) as u64;
        Duration::from_millis(fastrand::u64(ms.div_ceil(2)..=ms))
    }

    /// A fresh sequence of waits for one caller.
    pub fn waits(self) -> Waits {
        Waits {
            policy: self,
            attempt: 0,
        }
    }
}

/// One caller's place in a backoff sequence.
#[derive(Debug, Clone)]
pub struct Waits {
    policy: Backoff,
    attempt: u32,
}

impl Waits {
    /// The wait before the next retry; each call moves one step on.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.policy.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// The longest wait the next retry may have (where the sequence is).
    pub fn ceiling(&self) -> Duration {
        self.policy.ceiling(self.attempt)
    }

    /// Retries waited so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the first wait (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let p = Backoff {
            first: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let ceilings: Vec<u128> = (0..6).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(u32::MAX), p.cap, "no overflow");
        for attempt in 0..8 {
            for _ in 0..50 {
                let d = p.delay(attempt);
                let c = p.ceiling(attempt);
                assert!(d <= c && d >= c / 2, "{d:?} for ceiling {c:?}");
            }
        }
    }

    #[test]
    fn a_sequence_moves_on_and_resets() {
        let mut w = RETRY.waits();
        assert_eq!(w.ceiling(), RETRY.first);
        for _ in 0..3 {
            w.next_delay();
        }
        assert_eq!((w.attempts(), w.ceiling()), (3, RETRY.first * 8));
        w.reset();
        assert_eq!((w.attempts(), w.ceiling()), (0, RETRY.first));
    }
}
