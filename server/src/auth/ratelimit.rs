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

/// Registrations per second from everywhere, with this burst.
const REGISTRATIONS_PER_SECOND: u32 = 200;
const REGISTRATION_BURST: u32 = 1000;

/// Registration is open to anyone on the provisioning network (PXE has no credentials):
/// this bounds how fast it can be used, overall and per client address.
pub struct RegistrationLimiter {
    overall: governor::DefaultDirectRateLimiter,
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
}

impl RegistrationLimiter {
    /// `per_address_per_minute`: what one address may register in a minute (all of a lab's
    /// VMs behind one NAT share an address).
    pub fn new(per_address_per_minute: u32) -> RegistrationLimiter {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        RegistrationLimiter {
            overall: RateLimiter::direct(
                Quota::per_second(n(REGISTRATIONS_PER_SECOND)).allow_burst(n(REGISTRATION_BURST)),
            ),
            by_ip: RateLimiter::keyed(per_minute(per_address_per_minute)),
        }
    }

    /// Counts one registration; `Err(RateLimited)` when a budget is spent.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<()> {
        if let Some(ip) = ip {
            if self.by_ip.check_key(&ip).is_err() {
                return Err(Error::RateLimited {
                    message: "too many registrations from this address; try again in a few \
                              seconds"
                        .into(),
                    retry_after_secs: 5,
                });
            }
        }
        if self.overall.check().is_err() {
            return Err(Error::RateLimited {
                message: "too many registrations at once; try again in a few seconds".into(),
                retry_after_secs: 5,
            });
        }
        self.by_ip.retain_recent();
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
    fn registrations_are_limited_per_address() {
        let l = RegistrationLimiter::new(3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            l.check(Some(ip)).unwrap();
        }
        assert!(matches!(l.check(Some(ip)), Err(Error::RateLimited { .. })));
        l.check(Some("192.0.2.8".parse().unwrap())).unwrap();
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
