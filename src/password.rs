//! AlcheMix's password policy and hashing (bcrypt, cost 10, so AlcheMix hashes still verify).

const SPECIALS: &str = "!@#$%^&*()_+-=[]{}|;:,.<>?";

const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "password1234",
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "qwerty",
    "qwerty123",
    "qwertyuiop",
    "abc123",
    "111111",
    "123123",
    "admin",
    "admin123",
    "letmein",
    "welcome",
    "welcome123",
    "monkey",
    "dragon",
    "master",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "iloveyou",
    "trustno1",
    "superman",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "changeme",
];

pub const BCRYPT_COST: u32 = 10;

/// bcrypt reads only this many bytes of a password: two longer passwords sharing them would
/// open the same account, so longer ones are refused rather than cut.
pub const BCRYPT_MAX_BYTES: usize = 72;

/// A valid cost-10 hash of a random string: unknown emails still pay one full compare.
pub const DUMMY_HASH: &str = "$2b$10$/LiiYeK1FONiKkEYkg4CK.o8BOiLTnrQ4I2dK51KOEqubmhGLhvPS";

/// Every rule the password breaks, all at once, as AlcheMix reported them.
pub fn problems(password: &str) -> Vec<String> {
    let mut out = Vec::new();
    let len = password.chars().count();
    if len < 12 {
        out.push("Password must be at least 12 characters long".to_string());
    }
    if len > 128 {
        out.push("Password must be at most 128 characters long".to_string());
    }
    if password.len() > BCRYPT_MAX_BYTES {
        out.push(format!(
            "Password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8 (bcrypt reads no further)"
        ));
    }
    if !password.chars().any(|c| c.is_ascii_uppercase()) {
        out.push("Password must contain at least one uppercase letter".to_string());
    }
    if !password.chars().any(|c| c.is_ascii_lowercase()) {
        out.push("Password must contain at least one lowercase letter".to_string());
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        out.push("Password must contain at least one number".to_string());
    }
    if !password.chars().any(|c| SPECIALS.contains(c)) {
        out.push(format!(
            "Password must contain at least one special character ({SPECIALS})"
        ));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        out.push("Password is too common".to_string());
    }
    if has_run(password, 6) {
        out.push("Password must not contain 6 or more repeated characters".to_string());
    }
    out
}

fn has_run(s: &str, n: usize) -> bool {
    let mut run = 0;
    let mut last = None;
    for c in s.chars() {
        run = if Some(c) == last { run + 1 } else { 1 };
        if run >= n {
            return true;
        }
        last = Some(c);
    }
    false
}

// The length is checked here rather than through bcrypt's `non_truncating_*` functions: those
// count the terminating NUL bcrypt appends, so they refuse a password of exactly 72 bytes,
// which bcrypt reads whole.

/// `None` for a password bcrypt would cut (the policy refuses those first).
pub fn hash(password: &str) -> Option<String> {
    if password.len() > BCRYPT_MAX_BYTES {
        return None;
    }
    bcrypt::hash(password, BCRYPT_COST).ok()
}

/// Verifies against a stored hash; an unreadable hash, or a password longer than bcrypt
/// reads, is a mismatch, never a crash and never a match on its first 72 bytes.
pub fn verify(password: &str, hash: &str) -> bool {
    password.len() <= BCRYPT_MAX_BYTES && bcrypt::verify(password, hash).unwrap_or(false)
}

/// Trimmed, lower-cased, and shaped like `local@domain.tld`, at most 254 characters.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    let (host, tld) = domain.rsplit_once('.')?;
    let ok = !local.is_empty()
        && !host.is_empty()
        && !tld.is_empty()
        && !domain.contains('@')
        && !email.contains(['<', '>', '"', '\'', '`']);
    ok.then_some(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(problems("Str0ng!Passw0rd").is_empty());
        let p = problems("short");
        assert!(p.len() >= 4, "{p:?}");
        assert!(problems("aaaaaaA1!bcdefg")
            .iter()
            .any(|m| m.contains("repeated")));
        assert!(problems(&format!("A1!{}", "ab".repeat(70)))
            .iter()
            .any(|m| m.contains("128")));
    }

    #[test]
    fn passwords_bcrypt_would_cut_are_refused() {
        let at_limit = format!("Str0ng!Passw0rd{}", "xyz".repeat(19));
        assert_eq!(at_limit.len(), 72);
        assert!(problems(&at_limit).is_empty());
        let longer = format!("{at_limit}y");
        assert!(problems(&longer).iter().any(|m| m.contains("72 bytes")));
        // Multi-byte characters count by their bytes: 30 characters, 90 bytes.
        assert!(problems(&format!("Aa1!{}", "é".repeat(43)))
            .iter()
            .any(|m| m.contains("72 bytes")));
        let hash = bcrypt::hash(&at_limit, 4).unwrap();
        assert!(verify(&at_limit, &hash));
        assert!(
            !verify(&longer, &hash),
            "the first 72 bytes alone never match"
        );
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Bob@Example.COM "),
            Some("bob@example.com".into())
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "@x.com",
            "bob@example",
            "a b@x.com",
            "<a>@x.com",
            "a@b@c.com",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
        assert_eq!(normalize_email(&format!("{}@x.com", "a".repeat(250))), None);
    }

    #[test]
    fn dummy_hash_is_a_real_cost_10_hash() {
        assert!(DUMMY_HASH.starts_with("$2b$10$"));
        assert!(bcrypt::verify("anything", DUMMY_HASH).is_ok());
        assert!(!verify("anything", DUMMY_HASH));
        assert!(!verify("x", "not a hash"));
    }
}
