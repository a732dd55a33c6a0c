//! What the platform gives every world alike: the clock and random bytes.

pub fn random(buf: &mut [u8]) {
    // WASI's random source does not fail; a zeroed buffer would only weaken ids, not crash.
    let _ = getrandom::fill(buf);
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
