//! Versioned migrations, recorded in a `schema_migrations` table and applied once even when
//! several instances start together (the version is re-read under `BEGIN IMMEDIATE`).

use super::{Database, DbError, Value};

/// Each entry is one version; never edit a released one, append a new one.
pub const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        email TEXT UNIQUE NOT NULL,
        password_hash TEXT NOT NULL,
        token_version INTEGER NOT NULL DEFAULT 0,
        created_at DATETIME DEFAULT CURRENT_TIMESTAMP
    )",
    "CREATE TABLE revoked_tokens (
        digest TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    )",
    "CREATE INDEX idx_revoked_tokens_expires ON revoked_tokens(expires_at)",
]];

/// Called once per request before the first statement: one cheap read when up to date.
pub fn prepare(db: &dyn Database) -> Result<(), DbError> {
    db.execute("PRAGMA foreign_keys = ON", &[])?;
    if current(db)? >= MIGRATIONS.len() as i64 {
        return Ok(());
    }
    db.execute("BEGIN IMMEDIATE", &[])?;
    let result = apply(db);
    match result {
        Ok(()) => db.execute("COMMIT", &[]).map(drop),
        Err(e) => {
            let _ = db.execute("ROLLBACK", &[]);
            Err(e)
        }
    }
}

fn current(db: &dyn Database) -> Result<i64, DbError> {
    Ok(db
        .execute("PRAGMA user_version", &[])?
        .first_i64()
        .unwrap_or(0))
}

fn apply(db: &dyn Database) -> Result<(), DbError> {
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at DATETIME DEFAULT CURRENT_TIMESTAMP
        )",
        &[],
    )?;
    let from = current(db)?;
    for (i, statements) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let version = i as i64 + 1;
        for sql in *statements {
            db.execute(sql, &[])?;
        }
        db.execute(
            "INSERT INTO schema_migrations (version) VALUES (?)",
            &[Value::Int(version)],
        )?;
        // PRAGMA takes no parameters; the version is an integer we produced.
        db.execute(&format!("PRAGMA user_version = {version}"), &[])?;
    }
    Ok(())
}
