//! Operators and automation: accounts (argon2id), sessions, API tokens, and the login rate
//! limit. It knows no HTTP: the API face turns cookies and headers into calls here.

pub mod http;
pub mod passwords;
pub mod ratelimit;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::{Clock, rfc3339};
use crate::error::{Error, Result};
use crate::secrets::token_hash;
use crate::store::{Db, auth as store};
use ratelimit::LoginLimiter;

/// The account created on first start.
pub const ADMIN: &str = "admin";
/// Idle sessions end after this long.
pub const SESSION_IDLE_MS: i64 = 2 * 3600 * 1000;
/// Every session ends this long after login, however active.
pub const SESSION_ABSOLUTE_MS: i64 = 12 * 3600 * 1000;
/// Sessions are touched at most this often (a write per request would be waste).
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// GET and HEAD only.
    Read,
    /// Everything an operator can do.
    Admin,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A logged-in operator (browser session).
    Operator {
        username: String,
        /// Hash of the session id (to log out).
        session: String,
        /// The session's CSRF token, required on state-changing requests.
        csrf: String,
    },
    /// An API token.
    Token {
        id: String,
        name: String,
        scope: Scope,
    },
}

impl Principal {
    pub fn name(&self) -> String {
        match self {
            Principal::Operator { username, .. } => username.clone(),
            Principal::Token { name, .. } => format!("token:{name}"),
        }
    }
}

/// A new session: the cookie value (shown only to the browser) and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
    pub username: String,
}

/// An API token as listed (never the secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_by: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<store::TokenRow> for TokenView {
    fn from(t: store::TokenRow) -> TokenView {
        TokenView {
            scope: if t.scope == "read" {
                Scope::Read
            } else {
                Scope::Admin
            },
            id: t.id,
            name: t.name,
            created_by: t.created_by,
            created_at: rfc3339(t.created_at),
            last_used_at: t.last_used_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

pub use crate::secrets::{random_secret, same_secret};

#[derive(Clone)]
pub struct Auth {
    db: Db,
    clock: Arc<dyn Clock>,
    limiter: Arc<LoginLimiter>,
}

impl Auth {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Auth {
        Auth {
            db,
            clock,
            limiter: Arc::new(LoginLimiter::new()),
        }
    }

    /// On an empty database, creates the `admin` account with a random password and
    /// returns that password (the caller prints it once). `None` when accounts exist.
    pub async fn ensure_admin(&self) -> Result<Option<String>> {
        if self.db.read(store::user_count).await? > 0 {
            return Ok(None);
        }
        let password = random_secret(15);
        let hash = passwords::hash_blocking(password.clone()).await?;
        let now = self.clock.now_ms();
        let created = self
            .db
            .write(move |tx| -> Result<bool> {
                // Another process may have raced us; only the first creates.
                if store::user_count(tx)? > 0 {
                    return Ok(false);
                }
                store::upsert_user(tx, ADMIN, &hash, now)?;
                Ok(true)
            })
            .await?;
        Ok(created.then_some(password))
    }

    /// Sets (or creates) an account's password and ends its sessions.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<()> {
        passwords::check_strength(password)?;
        if username.is_empty() || username.len() > 64 {
            return Err(Error::invalid("username", "1–64 characters"));
        }
        let hash = passwords::hash_blocking(password.to_string()).await?;
        let now = self.clock.now_ms();
        let username = username.to_string();
        self.db
            .write(move |tx| -> Result<()> {
                let id = store::upsert_user(tx, &username, &hash, now)?;
                store::delete_user_sessions(tx, id)?;
                Ok(())
            })
            .await
    }

    /// Checks a password login; rate-limited per client address and per account.
    pub async fn login(
        &self,
        ip: Option<IpAddr>,
        username: &str,
        password: &str,
    ) -> Result<NewSession> {
        self.limiter.check(ip, username)?;
        let name = username.to_string();
        let user = self.db.read(move |c| store::user_by_name(c, &name)).await?;
        let denied = || Error::Unauthorized("wrong username or password".into());
        // Verify even for unknown users, so timing does not reveal which accounts exist.
        let (hash, user) = match user {
            Some(u) => (u.password_hash.clone(), Some(u)),
            None => (passwords::DUMMY_HASH.to_string(), None),
        };
        let ok = passwords::verify_blocking(password.to_string(), hash).await?;
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => return Err(denied()),
        };
        let cookie = random_secret(32);
        let csrf = random_secret(24);
        let now = self.clock.now_ms();
        let (h, c, uid) = (token_hash(&cookie), csrf.clone(), user.id);
        self.db
            .write(move |tx| -> Result<()> {
                store::expire_sessions(tx, now - SESSION_IDLE_MS, now - SESSION_ABSOLUTE_MS)?;
                store::insert_session(tx, &h, uid, &c, now)?;
                Ok(())
            })
            .await?;
        Ok(NewSession {
            cookie,
            csrf,
            username: user.username,
        })
    }

    /// The operator behind a session cookie, if the session is alive.
    pub async fn session(&self, cookie: &str) -> Result<Option<Principal>> {
        let hash = token_hash(cookie);
        let h = hash.clone();
        let Some(s) = self.db.read(move |c| store::session(c, &h)).await? else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        if now - s.last_seen_at > SESSION_IDLE_MS || now - s.created_at > SESSION_ABSOLUTE_MS {
            let h = hash.clone();
            // Best effort: an expired session is refused whether or not its row goes now.
            if let Err(e) = self.db.write(move |tx| store::delete_session(tx, &h)).await {
                tracing::warn!(error = %e, "could not delete an expired session");
            }
            return Ok(None);
        }
        if now - s.last_seen_at > TOUCH_EVERY_MS {
            let h = hash.clone();
            // Bookkeeping: a full disk must not turn every read into a 500.
            if let Err(e) = self
                .db
                .write(move |tx| store::touch_session(tx, &h, now))
                .await
            {
                tracing::warn!(error = %e, "could not record session activity");
            }
        }
        Ok(Some(Principal::Operator {
            username: s.username,
            session: hash,
            csrf: s.csrf_token,
        }))
    }

    pub async fn logout(&self, session_hash: &str) -> Result<()> {
        let h = session_hash.to_string();
        self.db
            .write(move |tx| store::delete_session(tx, &h))
            .await?;
        Ok(())
    }

    /// Creates an API token; the secret is returned only here.
    pub async fn create_token(
        &self,
        name: &str,
        scope: Scope,
        created_by: &str,
    ) -> Result<(TokenView, String)> {
        if name.chars().count() > 64 || name.trim().is_empty() {
            return Err(Error::invalid("name", "1–64 characters, not all blank"));
        }
        let name = name.trim().to_string();
        let secret = format!("dfo_{}", random_secret(32));
        let row = store::TokenRow {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            name,
            scope: scope.as_str().to_string(),
            created_by: created_by.to_string(),
            created_at: self.clock.now_ms(),
            last_used_at: None,
            revoked_at: None,
        };
        let hash = token_hash(&secret);
        let r = row.clone();
        self.db
            .write(move |tx| store::insert_token(tx, &r, &hash))
            .await?;
        Ok((TokenView::from(row), secret))
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>> {
        let rows = self.db.read(store::tokens).await?;
        Ok(rows.into_iter().map(TokenView::from).collect())
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        let now = self.clock.now_ms();
        let id = id.to_string();
        let found = self
            .db
            .write(move |tx| store::revoke_token(tx, &id, now))
            .await?;
        if found {
            Ok(())
        } else {
            Err(Error::not_found("API token"))
        }
    }

    /// The principal behind a bearer API token, if it is live.
    pub async fn token(&self, secret: &str) -> Result<Option<Principal>> {
        if !secret.starts_with("dfo_") {
            return Ok(None);
        }
        let hash = token_hash(secret);
        let Some(t) = self
            .db
            .read(move |c| store::token_by_hash(c, &hash))
            .await?
        else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        if t.last_used_at.is_none_or(|u| now - u > TOUCH_EVERY_MS) {
            let id = t.id.clone();
            // Bookkeeping: a full disk must not turn every read into a 500.
            if let Err(e) = self
                .db
                .write(move |tx| store::touch_token(tx, &id, now))
                .await
            {
                tracing::warn!(error = %e, "could not record API token use");
            }
        }
        Ok(Some(Principal::Token {
            id: t.id,
            name: t.name,
            scope: if t.scope == "read" {
                Scope::Read
            } else {
                Scope::Admin
            },
        }))
    }
}
