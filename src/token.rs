//! AlcheMix access tokens: HS256 only, the algorithm pinned, claims the edge needs required.
//!
//! Written on `hmac` + `sha2` rather than a JWT library: the edge only ever needs HS256, and
//! the general libraries link every RSA, ECDSA and EdDSA verifier into the component, which
//! tripled its code and added 68 KB to the memory image that every request's fresh instance
//! starts from.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
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

/// `{"alg":"HS256","typ":"JWT"}`, base64url-encoded: the only header the edge issues.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

#[derive(Deserialize)]
struct Header {
    alg: String,
}

pub struct Keys {
    mac: Hmac<Sha256>,
    /// The secret before a rotation: its tokens are still accepted, none is issued with it.
    previous: Option<Hmac<Sha256>>,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: hmac(secret),
            previous: None,
        }
    }

    pub fn accepting_previous(mut self, secret: &[u8]) -> Self {
        self.previous = Some(hmac(secret));
        self
    }

    fn signature(&self, header: &str, payload: &str) -> Hmac<Sha256> {
        sign_with(&self.mac, header, payload)
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // Serialising a struct of integers and strings cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signature = self.signature(HEADER, &payload).finalize().into_bytes();
        format!("{HEADER}.{payload}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Verifies algorithm, signature (in constant time) and expiry at `now` (unix seconds),
    /// then refuses tokens without a usable id or from the future.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(encoded_header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let header: Header =
            serde_json::from_slice(&decode(encoded_header)?).map_err(|_| TokenError::Invalid)?;
        if header.alg != "HS256" {
            return Err(TokenError::Invalid);
        }
        let signature = decode(signature)?;
        let signed_by = |mac: &Hmac<Sha256>| {
            sign_with(mac, encoded_header, payload)
                .verify_slice(&signature)
                .is_ok()
        };
        if !signed_by(&self.mac) && !self.previous.as_ref().is_some_and(signed_by) {
            return Err(TokenError::Invalid);
        }
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Invalid)?;
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

fn hmac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

fn sign_with(key: &Hmac<Sha256>, header: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac = key.clone();
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac
}

fn decode(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Invalid)
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
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(SECRET).unwrap();
        mac.update(format!("{header}.{payload}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let hs512 = format!("{header}.{payload}.{sig}");
        assert_eq!(keys.verify(&hs512, n), Err(TokenError::Invalid));
        // The right signature under a header that names another algorithm is refused too.
        let signed = keys.sign(&claims(n));
        let sig = signed.rsplit('.').next().unwrap();
        assert_eq!(
            keys.verify(&format!("{header}.{payload}.{sig}"), n),
            Err(TokenError::Invalid)
        );
        // Extra parts, padding and a truncated signature are refused.
        assert_eq!(
            keys.verify(&format!("{signed}.x"), n),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys.verify(&format!("{signed}="), n),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys.verify(&signed[..signed.len() - 2], n),
            Err(TokenError::Invalid)
        );
        for junk in ["", "a.b.c", "....", "\u{0}", "eyJ.eyJ.sig"] {
            assert_eq!(keys.verify(junk, n), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn a_rotation_accepts_the_previous_secret_and_signs_with_the_new_one() {
        let old = Keys::new(b"old-secret-old-secret-old-secret");
        let rotated = Keys::new(SECRET).accepting_previous(b"old-secret-old-secret-old-secret");
        let n = now();
        let issued_before = old.sign(&claims(n));
        assert_eq!(rotated.verify(&issued_before, n), Ok(claims(n)));
        let issued_after = rotated.sign(&claims(n));
        assert_eq!(Keys::new(SECRET).verify(&issued_after, n), Ok(claims(n)));
        assert_eq!(old.verify(&issued_after, n), Err(TokenError::Invalid));
        let stranger = Keys::new(b"another-secret-another-secret-xx").sign(&claims(n));
        assert_eq!(rotated.verify(&stranger, n), Err(TokenError::Invalid));
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
    fn header_is_hs256_jwt() {
        assert_eq!(
            URL_SAFE_NO_PAD.decode(HEADER).unwrap(),
            br#"{"alg":"HS256","typ":"JWT"}"#
        );
    }

    /// The HS256 example of jwt.io / RFC 7519 tooling: the MAC matches other implementations.
    #[test]
    fn signature_matches_the_published_example() {
        let keys = Keys::new(b"your-256-bit-secret");
        let payload = "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ";
        let mac = keys.signature(HEADER, payload).finalize().into_bytes();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(mac),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
