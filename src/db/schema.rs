//! Versioned migrations, recorded in `PRAGMA user_version` and applied once even when several
//! instances start together (the version is re-read under `BEGIN IMMEDIATE`).

use super::{Database, DbError};

/// Each entry is one version; never edit a released one, append a new one.
pub const MIGRATIONS: &[&[&str]] = &[
    &[
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
    ],
    &[
        r#"CREATE TABLE bottles (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        "Stock Number" INTEGER,
        "Liquor Type" TEXT,
        "Detailed Spirit Classification" TEXT,
        "Distillation Method" TEXT,
        "ABV (%)" REAL,
        "Distillery Location" TEXT,
        "Age Statement or Barrel Finish" TEXT,
        "Additional Notes" TEXT,
        "Profile (Nose)" TEXT,
        "Palate" TEXT,
        "Finish" TEXT,
        created_at DATETIME DEFAULT CURRENT_TIMESTAMP
    )"#,
        "CREATE INDEX idx_bottles_user ON bottles(user_id, created_at)",
        "CREATE TABLE collections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        description TEXT,
        created_at DATETIME DEFAULT CURRENT_TIMESTAMP
    )",
        "CREATE INDEX idx_collections_user ON collections(user_id)",
        "CREATE TABLE recipes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        ingredients TEXT NOT NULL DEFAULT '[]',
        instructions TEXT,
        glass TEXT,
        category TEXT,
        collection_id INTEGER REFERENCES collections(id) ON DELETE SET NULL,
        created_at DATETIME DEFAULT CURRENT_TIMESTAMP
    )",
        "CREATE INDEX idx_recipes_user ON recipes(user_id, created_at)",
        "CREATE INDEX idx_recipes_collection ON recipes(collection_id)",
        "CREATE TABLE favorites (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        recipe_name TEXT NOT NULL,
        recipe_id INTEGER REFERENCES recipes(id) ON DELETE SET NULL,
        created_at DATETIME DEFAULT CURRENT_TIMESTAMP
    )",
        "CREATE INDEX idx_favorites_user ON favorites(user_id)",
    ],
    &[
        // The embedded store's rate-limit counters (used when no Redis is configured).
        "CREATE TABLE edge_counters (
            key TEXT PRIMARY KEY,
            count INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        )",
        "CREATE INDEX idx_edge_counters_expires ON edge_counters(expires_at)",
    ],
    &[
        // Under Spin every request opens a new connection, which parses the whole schema
        // first: this table only repeated what `user_version` records.
        "DROP TABLE IF EXISTS schema_migrations",
    ],
    &[
        // Logins and signups match addresses in any case (AlcheMix stored them as typed).
        "CREATE INDEX IF NOT EXISTS idx_users_email_lower ON users(lower(email))",
    ],
];

/// The version the migrations bring a database to.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Called once per request before the first statement: one cheap read when up to date.
pub fn prepare(db: &dyn Database) -> Result<(), DbError> {
    if current(db)? >= LATEST {
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
    let from = current(db)?;
    for (i, statements) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let version = i as i64 + 1;
        for sql in *statements {
            db.execute(sql, &[])?;
        }
        // PRAGMA takes no parameters; the version is an integer we produced.
        db.execute(&format!("PRAGMA user_version = {version}"), &[])?;
    }
    Ok(())
}
