//! argon2id password hashes (PHC strings), computed on the blocking pool: a hash takes tens
//! of milliseconds of CPU by design.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{Error, Result};

/// Password checks at once, process-wide: each takes ~19 MiB and tens of milliseconds of a
/// core, so a burst of logins with random usernames queues here instead of taking the
/// server's memory. A process-wide resource cap, like the allocator.
static HASHING: Semaphore = Semaphore::const_new(2);
/// How long a login waits for its turn before it is told to come back.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

async fn turn() -> Result<SemaphorePermit<'static>> {
    match tokio::time::timeout(QUEUE_WAIT, HASHING.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(Error::RateLimited {
            message: "too many password checks at once; try again in a few seconds".into(),
            retry_after_secs: 5,
        }),
    }
}

/// A valid hash of a random password, verified against when the user does not exist so a
/// failed login takes the same time either way.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1Xm0n5pMvGqXJ0uV5H4oYQ9yB8I2fS3k6dWnZ7cA1eE";

pub fn check_strength(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < 12 {
        return Err(Error::invalid("password", "at least 12 characters"));
    }
    if password.len() > 1024 {
        return Err(Error::invalid("password", "at most 1024 bytes"));
    }
    Ok(())
}

pub fn hash(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub async fn hash_blocking(password: String) -> Result<String> {
    let _turn = turn().await?;
    tokio::task::spawn_blocking(move || {
        let out = hash(&password);
        crate::memory::release_unused();
        out
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

pub async fn verify_blocking(password: String, phc: String) -> Result<bool> {
    let _turn = turn().await?;
    tokio::task::spawn_blocking(move || {
        let out = verify(&password, &phc);
        crate::memory::release_unused();
        out
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("wrong horse battery", &h));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify("anything", DUMMY_HASH));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough password").is_ok());
    }
}
