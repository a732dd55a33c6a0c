//! AlcheMix access tokens through `jsonwebtoken`: HS256 only, the algorithm pinned, the claims
//! the edge needs required, and the previous secret of a rotation still accepted.
//!
//! The crate's signing runs through a crypto provider of our own that knows HS256 alone: its
//! `rust_crypto` provider links every RSA, ECDSA and EdDSA implementation into the component
//! (1.81 MB against 0.96 MB, measured on the release build), which a fresh instance per request
//! (the WASI 0.2 build under Spin) pays for on every request.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result as JwtResult};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::http::Request;
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

/// HMAC-SHA256 keyed with a token secret; every other algorithm is refused before any key use.
struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn keyed(algorithm: &Algorithm, secret: JwtResult<&[u8]>) -> JwtResult<Self> {
        if *algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Hmac::new_from_slice(secret?)
            .map(Self)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        let mut mac = self.0.clone();
        mac.update(msg);
        // Constant time, through the MAC's own comparison.
        mac.verify_slice(signature)
            .map_err(|_| SignatureError::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

static HS256_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| {
        Ok(Box::new(Hs256::keyed(alg, key.try_get_hmac_secret())?) as Box<dyn JwtSigner>)
    },
    verifier_factory: |alg, key| {
        Ok(Box::new(Hs256::keyed(alg, key.try_get_hmac_secret())?) as Box<dyn JwtVerifier>)
    },
    jwk_utils: JwkUtils::new_unimplemented(),
};

#[derive(Clone)]
pub struct Keys {
    signing: EncodingKey,
    current: DecodingKey,
    /// The secret before a rotation: its tokens are still accepted, none is issued with it.
    previous: Option<DecodingKey>,
    validation: Validation,
}

/// Only the number of secrets: a key never reaches a log or an error.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        // The first call installs it for the process; later calls find it there.
        let _ = HS256_ONLY.install_default();
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry and issue time are checked against the caller's clock below (the request's
        // `now`), with no leeway; nothing else is a registered claim of these tokens.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Self {
            signing: EncodingKey::from_secret(secret),
            current: DecodingKey::from_secret(secret),
            previous: None,
            validation,
        }
    }

    pub fn accepting_previous(mut self, secret: &[u8]) -> Self {
        self.previous = Some(DecodingKey::from_secret(secret));
        self
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // HMAC signing of a struct of integers and strings cannot fail.
        encode(&Header::new(Algorithm::HS256), claims, &self.signing).unwrap_or_default()
    }

    /// Verifies algorithm, signature and expiry at `now` (unix seconds), then refuses tokens
    /// without a usable id or from the future.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let decoded =
            decode::<Claims>(token, &self.current, &self.validation).or_else(|e| {
                match (e.kind(), &self.previous) {
                    (jsonwebtoken::errors::ErrorKind::InvalidSignature, Some(previous)) => {
                        decode::<Claims>(token, previous, &self.validation)
                    }
                    _ => Err(e),
                }
            });
        let claims = decoded.map_err(|_| TokenError::Invalid)?.claims;
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

/// The bearer token of a request, verified: its claims and its digest (the only form in which
/// a token is ever stored or compared).
pub fn authenticate(req: &Request, keys: &Keys, now: i64) -> Result<(Claims, String), ApiError> {
    let token = bearer(req.header("authorization")).map_err(|e| match e {
        TokenError::Missing => ApiError::Unauthorized("No authorization token provided"),
        TokenError::Invalid => ApiError::Unauthorized("Invalid or expired token"),
    })?;
    let claims = keys
        .verify(token, now)
        .map_err(|_| ApiError::Unauthorized("Invalid or expired token"))?;
    Ok((claims, digest(token)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// User 7's claims, issued at `now`, for an hour.
    pub(crate) fn claims(now: i64) -> Claims {
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
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
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
    fn issued_tokens_name_hs256() {
        let t = Keys::new(SECRET).sign(&claims(now()));
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
    }

    /// The HS256 example of jwt.io / RFC 7519 tooling verifies: the MAC matches others'.
    #[test]
    fn the_published_example_verifies() {
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                     eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
                     SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        // The provider is installed by the first `Keys`; the crate's own would panic here.
        let _ = Keys::new(b"your-256-bit-secret");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let key = DecodingKey::from_secret(b"your-256-bit-secret");
        assert!(decode::<serde_json::Value>(token, &key, &validation).is_ok());
        let wrong = DecodingKey::from_secret(b"not-the-secret");
        assert!(decode::<serde_json::Value>(token, &wrong, &validation).is_err());
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
