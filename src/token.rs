//! AlcheMix access tokens: HS256 only, the algorithm pinned, claims the edge needs required.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Tokens longer than this are refused unread: no real token comes near it.
pub const MAX_TOKEN_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "userId")]
    pub user_id: i64,
    pub email: String,
    #[serde(rename = "tokenVersion")]
    pub token_version: i64,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Invalid,
}

/// Reads `Authorization: Bearer <token>` (AlcheMix also took a bare token).
pub fn bearer(header: Option<&str>) -> Result<&str, TokenError> {
    let value = header.map(str::trim).unwrap_or_default();
    if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return Err(TokenError::Invalid),
        None => value,
    };
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Invalid);
    }
    Ok(token)
}

pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // HS256 signing of a plain struct cannot fail.
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).unwrap_or_default()
    }

    /// Verifies signature, algorithm and expiry at `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        // jsonwebtoken checks exp against its own clock; the edge checks against the caller's too,
        // and refuses tokens without a usable id or from the future.
        if claims.exp <= now
            || claims.iat > now + 60
            || claims.jti.is_empty()
            || claims.jti.len() > 64
            || claims.user_id <= 0
        {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

/// The revocation id of a token: a SHA-256 digest, so the raw token is never stored.
pub fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(now: i64) -> Claims {
        Claims {
            user_id: 7,
            email: "a@b.co".into(),
            token_version: 0,
            jti: "00112233445566778899aabb".into(),
            iat: now,
            exp: now + 3600,
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn round_trip() {
        let keys = Keys::new(SECRET);
        let c = claims(now());
        let t = keys.sign(&c);
        assert_eq!(keys.verify(&t, now()), Ok(c));
    }

    #[test]
    fn rejects_wrong_key_expired_alg_none_and_garbage() {
        let keys = Keys::new(SECRET);
        let other = Keys::new(b"another-secret-another-secret-xx");
        let n = now();
        assert_eq!(
            keys.verify(&other.sign(&claims(n)), n),
            Err(TokenError::Invalid)
        );
        let mut old = claims(n - 10_000);
        old.exp = n - 1;
        assert_eq!(keys.verify(&keys.sign(&old), n), Err(TokenError::Invalid));
        // alg=none with the same claims.
        let body = keys.sign(&claims(n));
        let payload = body.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(keys.verify(&none, n), Err(TokenError::Invalid));
        // HS512 with the right key is still refused: the algorithm is pinned.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims(n),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(keys.verify(&hs512, n), Err(TokenError::Invalid));
        for junk in ["", "a.b.c", "....", "\u{0}", "eyJ.eyJ.sig"] {
            assert_eq!(keys.verify(junk, n), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(None), Err(TokenError::Missing));
        assert_eq!(bearer(Some("  ")), Err(TokenError::Missing));
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(Some("abc")), Ok("abc"));
        assert_eq!(bearer(Some("Basic abc")), Err(TokenError::Invalid));
        assert_eq!(bearer(Some("Bearer ")), Err(TokenError::Missing));
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(bearer(Some(&huge)), Err(TokenError::Invalid));
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
