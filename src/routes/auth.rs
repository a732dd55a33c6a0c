//! `/auth/*`: signup, login, me, logout, logout-all.

use serde_json::{json, Value as Json};

use crate::api::Ctx;
use crate::db::Value;
use crate::error::ApiError;
use crate::http::{json_object, Request, Response};
use crate::password;
use crate::token::{hex, Claims};

const INVALID_LOGIN: &str = "Invalid email or password";

fn credentials(req: &Request) -> Result<(String, String), ApiError> {
    let body = json_object(&req.body).ok_or_else(|| ApiError::bad_request("Invalid JSON body"))?;
    let field = |name: &str| match body.get(name) {
        Some(Json::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    match (field("email"), field("password")) {
        (Some(email), Some(password)) => Ok((email, password)),
        _ => Err(ApiError::bad_request("Email and password are required")),
    }
}

fn user_json(row: &[Value]) -> Json {
    json!({ "id": &row[0], "email": &row[1], "created_at": &row[2] })
}

fn issue(cx: &Ctx<'_>, user_id: i64, email: &str, token_version: i64) -> String {
    let mut jti = [0u8; 12];
    (cx.random)(&mut jti);
    let now = cx.now_ms / 1000;
    cx.keys.sign(&Claims {
        user_id,
        email: email.to_string(),
        token_version,
        jti: hex(&jti),
        iat: now,
        exp: now + cx.config.token_ttl_secs,
    })
}

pub async fn signup(req: &Request, cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (email, password) = credentials(req)?;
    let email = password::normalize_email(&email)
        .ok_or_else(|| ApiError::bad_request("Invalid email format"))?;
    let problems = password::problems(&password);
    if !problems.is_empty() {
        return Err(ApiError::validation(
            "Password does not meet security requirements",
            problems,
        ));
    }
    let hash = password::hash(&password)
        .ok_or_else(|| ApiError::Internal("bcrypt hashing failed".into()))?;
    // Addresses stored by AlcheMix itself may carry capitals: the same address in another case
    // is the same account, checked in the one statement that inserts.
    let exists = || ApiError::bad_request("User already exists with this email");
    let rows = cx
        .db
        .execute(
            "INSERT INTO users (email, password_hash) SELECT ?1, ?2 \
             WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(email) = ?1) \
             RETURNING id, email, created_at, token_version",
            &[Value::from(email.as_str()), Value::from(hash.as_str())],
        )
        .map_err(|e| {
            if e.is_unique_violation() {
                exists()
            } else {
                ApiError::from(e)
            }
        })?;
    let row = rows.rows.first().ok_or_else(exists)?;
    let id = row[0].as_i64().unwrap_or_default();
    // A database recreated under the same Redis hands out ids again: pages cached for the
    // id's previous owner must not match the new owner's data version.
    if let Err(e) = cx.store.data_changed(id, None).await {
        cx.note_error(format!("could not set a new user's data version: {e:?}"));
    }
    let token = issue(cx, id, &email, row[3].as_i64().unwrap_or(0));
    Ok(Response::data(
        201,
        json!({ "token": token, "user": user_json(row) }),
    ))
}

pub fn login(req: &Request, cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (email, password) = credentials(req)?;
    let found = match password::normalize_email(&email) {
        Some(email) => cx
            .db
            .execute(
                // Lower-cased input against every stored case (AlcheMix kept addresses as
                // typed); an exact match wins over a case-folded one.
                "SELECT id, email, created_at, password_hash, token_version \
                 FROM users WHERE lower(email) = ?1 ORDER BY email = ?1 DESC, id LIMIT 1",
                &[Value::from(email.as_str())],
            )
            .map_err(ApiError::from)?
            .rows
            .into_iter()
            .next(),
        None => None,
    };
    // Unknown accounts pay the same bcrypt compare, so timing does not reveal which exist.
    let hash = found
        .as_ref()
        .and_then(|row| row[3].as_str())
        .unwrap_or(password::DUMMY_HASH);
    let matches = password::verify(&password, hash);
    let Some(row) = found.filter(|_| matches) else {
        return Err(ApiError::Unauthorized(INVALID_LOGIN));
    };
    let id = row[0].as_i64().unwrap_or_default();
    let email = row[1].as_str().unwrap_or_default().to_string();
    let token = issue(cx, id, &email, row[4].as_i64().unwrap_or(0));
    Ok(Response::data(
        200,
        json!({ "token": token, "user": user_json(&row) }),
    ))
}

pub fn me(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let user = cx.user()?;
    let rows = cx
        .db
        .execute(
            "SELECT id, email, created_at FROM users WHERE id = ?",
            &[Value::Int(user)],
        )
        .map_err(ApiError::from)?;
    let row = rows
        .rows
        .first()
        .ok_or_else(|| ApiError::NotFound("User not found".into()))?;
    Ok(Response::data(200, user_json(row)))
}

pub async fn logout(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (token, digest) = cx.token()?;
    // The database is the record that outlives Redis; the store is what every instance reads.
    cx.db
        .execute(
            "INSERT INTO revoked_tokens (digest, user_id, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
            &[
                Value::from(digest),
                Value::Int(token.user_id),
                Value::Int(token.exp),
            ],
        )
        .map_err(ApiError::from)?;
    cx.store.revoke(digest, token.exp).await?;
    Ok(Response::message("Logged out successfully"))
}

pub async fn logout_all(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let user = cx.user()?;
    let version = cx
        .db
        .execute(
            "UPDATE users SET token_version = token_version + 1 WHERE id = ? RETURNING token_version",
            &[Value::Int(user)],
        )
        .map_err(ApiError::from)?
        .first_i64()
        .ok_or_else(|| ApiError::NotFound("User not found".into()))?;
    cx.store
        .raise_min_version(user, version, cx.config.token_ttl_secs + 60)
        .await?;
    Ok(Response::message("Logged out of all sessions"))
}
