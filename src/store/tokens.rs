//! API tokens: a script acts as a secretary with `Authorization: Bearer …`. Only the
//! SHA-256 of a token is stored (a copy of the file opens nothing); the token itself is
//! shown once, when `permanence token create` makes it.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::{StoreError, now_text, open_connection, sqlite};

/// A token as `permanence token list` shows it (never the token itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRow {
    /// Its number, for `revoke`.
    pub id: i64,
    /// The secretary it acts as.
    pub username: String,
    /// What it is for, as given at creation.
    pub label: String,
    /// When it was made (RFC 3339, UTC).
    pub created_at: String,
    /// Unix seconds after which it opens nothing.
    pub expires_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// Stores a new token's hash; its number.
pub fn create_token(
    path: &Path,
    hash: &str,
    username: &str,
    label: &str,
    expires_at: i64,
) -> Result<i64, StoreError> {
    let conn = open_connection(path)?;
    conn.execute(
        "INSERT INTO api_tokens (hash, username, label, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash, username, label, now_text(), expires_at],
    )
    .map_err(sqlite(path))?;
    Ok(conn.last_insert_rowid())
}

/// Every token, newest first.
pub fn tokens(path: &Path) -> Result<Vec<TokenRow>, StoreError> {
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare(
            "SELECT id, username, label, created_at, expires_at, revoked_at
             FROM api_tokens ORDER BY id DESC",
        )
        .map_err(sqlite(path))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TokenRow {
                id: r.get(0)?,
                username: r.get(1)?,
                label: r.get(2)?,
                created_at: r.get(3)?,
                expires_at: r.get(4)?,
                revoked_at: r.get(5)?,
            })
        })
        .map_err(sqlite(path))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sqlite(path))
}

/// Revokes a token at once; false when there is no such live token.
pub fn revoke_token(path: &Path, id: i64) -> Result<bool, StoreError> {
    let conn = open_connection(path)?;
    let n = conn
        .execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now_text()],
        )
        .map_err(sqlite(path))?;
    Ok(n == 1)
}

/// The secretary a token acts as, when it is live (not revoked, not expired).
pub fn token_user(path: &Path, hash: &str, now: i64) -> Result<Option<String>, StoreError> {
    let conn = open_connection(path)?;
    let username: Option<String> = conn
        .query_row(
            "SELECT username FROM api_tokens
             WHERE hash = ?1 AND revoked_at IS NULL AND expires_at > ?2",
            params![hash, now],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite(path))?;
    Ok(username)
}
