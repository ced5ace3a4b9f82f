//! Login attempts are limited per client address, and per account *from* one address: one
//! machine cannot guess quickly, and nobody can lock an operator out by failing logins for
//! their account from elsewhere (a correct password from a clean address always gets
//! through). Many addresses guessing at once are slowed by the cap on concurrent password
//! checks (`passwords`). In memory: a restart resets the counters, which costs an attacker a
//! restart of the server — acceptable.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{Error, Result};

/// Attempts per minute from one address.
const PER_IP: u32 = 20;
/// Attempts per minute against one account from one address.
const PER_ACCOUNT: u32 = 5;

pub struct LoginLimiter {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_account: DefaultKeyedRateLimiter<(String, Option<IpAddr>)>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter {
            by_ip: RateLimiter::keyed(per_minute(PER_IP)),
            by_account: RateLimiter::keyed(per_minute(PER_ACCOUNT)),
        }
    }

    /// Counts one attempt; `Err(RateLimited)` when either budget is spent.
    pub fn check(&self, ip: Option<IpAddr>, account: &str) -> Result<()> {
        if let Some(ip) = ip {
            if self.by_ip.check_key(&ip).is_err() {
                return Err(Error::RateLimited {
                    message: "too many login attempts from this address; wait a minute".into(),
                    retry_after_secs: 60,
                });
            }
        }
        let key = (account.to_ascii_lowercase(), ip);
        if self.by_account.check_key(&key).is_err() {
            return Err(Error::RateLimited {
                message: "too many login attempts for this account from this address; wait a \
                          minute"
                    .into(),
                retry_after_secs: 60,
            });
        }
        // Forget idle keys now and then so the maps stay small.
        self.by_ip.retain_recent();
        self.by_account.retain_recent();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_gets_five_attempts_a_minute() {
        let l = LoginLimiter::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..PER_ACCOUNT {
            l.check(Some(ip), "admin").unwrap();
        }
        assert!(matches!(
            l.check(Some(ip), "Admin"),
            Err(Error::RateLimited { .. })
        ));
        // Another account from another address is unaffected.
        l.check(Some("192.0.2.2".parse().unwrap()), "ops").unwrap();
        // And so is the same account from a clean address: no lock-out from elsewhere.
        l.check(Some("192.0.2.3".parse().unwrap()), "admin")
            .unwrap();
    }

    #[test]
    fn an_address_gets_twenty_attempts_a_minute() {
        let l = LoginLimiter::new();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for i in 0..PER_IP {
            l.check(Some(ip), &format!("user{i}")).unwrap();
        }
        assert!(matches!(
            l.check(Some(ip), "fresh"),
            Err(Error::RateLimited { .. })
        ));
    }
}
