//! Random secrets, their stored form and their comparison: shared by operator sessions and
//! API tokens (`auth`) and agent tokens (`machines`), so neither imports the other.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Random bytes as URL-safe base64.
pub fn random_secret(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Compares secrets without leaking where they differ through timing.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The stored form of a token. Tokens are 256 random bits, so a fast hash is enough to keep
/// the stored form useless to a reader of the database.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
