//! Retry delays: exponential backoff with jitter, so a rack of machines that lost the server
//! at the same moment do not all come back at the same moment.

use std::time::Duration;

/// First retry delay while the server is unreachable or failing.
pub const BASE: Duration = Duration::from_millis(250);
/// Longest retry delay while the server is unreachable or failing.
pub const CAP: Duration = Duration::from_secs(5);
/// Delay after the server refused a request (4xx): retrying fast will not change its mind.
pub const SLOW: Duration = Duration::from_secs(30);

/// A small, seedable pseudo-random generator (xorshift64*): jitter needs no more, and tests
/// pass a fixed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // xorshift has one fixed point, 0; mix the seed so nearby seeds diverge at once.
        Self(splitmix(seed) | 1)
    }

    /// A seed from the clock, the process id and a counter: machines booted at the same
    /// second still differ by their pid and, in the simulator, by their index.
    pub fn seed_from_clock(extra: u64) -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32) ^ splitmix(extra)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniformly random duration in `[low, high]` (millisecond resolution).
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let lo = low.as_millis() as u64;
        let hi = high.as_millis() as u64;
        if hi <= lo {
            return low;
        }
        Duration::from_millis(lo + self.next_u64() % (hi - lo + 1))
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Exponential backoff: the n-th delay (from 0) lies in `[c/2, c]` with
/// `c = min(cap, base * 2^n)` ("equal jitter": never shorter than half the step, so a
/// failing server still gets some rest).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration, rng: Rng) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
            rng,
        }
    }

    /// The agent's backoff: 250 ms doubling up to 5 s.
    pub fn standard(rng: Rng) -> Self {
        Self::new(BASE, CAP, rng)
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay; each call doubles the ceiling until it reaches the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        self.rng.between(ceiling / 2, ceiling)
    }

    /// Call after a success: the next failure starts from the base delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// A delay around `d` (between 90 % and 110 %), for the slow fixed retries.
    pub fn jittered(&mut self, d: Duration) -> Duration {
        self.rng.between(d.mul_f64(0.9), d.mul_f64(1.1))
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}
