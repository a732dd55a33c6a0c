//! Sliding-window counter maths, kept free of I/O so the Redis script and the SQLite store
//! agree with one tested definition.
//!
//! The window is split into fixed slots of `window_ms`; the estimate of the last `window_ms`
//! is `prev * (window - elapsed) / window + curr`, which removes the 2x burst a fixed window
//! allows at its boundary.

use std::fmt::{self, Write};

use crate::policy::Policy;

/// The counters a store read (and possibly wrote) for one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// Index of the current slot (`now / window`).
    pub slot: i64,
    pub prev: u64,
    /// The current slot's count, after this request's increment if it was admitted.
    pub curr: u64,
    /// Milliseconds since the current slot started.
    pub elapsed_ms: u64,
}

/// Whether `cost` more units fit; the same test the stores run atomically.
pub fn admits(
    limit: u32,
    window_ms: u64,
    prev: u64,
    curr: u64,
    elapsed_ms: u64,
    cost: u64,
) -> bool {
    band(limit, window_ms, prev, curr, elapsed_ms, cost) != Band::Over
}

/// Where a check leaves a policy, for the fleet's counters (Envoy ratelimit's names): over
/// the limit, near it (80% or more used once this request counts), or within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    Within,
    Near,
    Over,
}

/// The band of `cost` more units; the same test the Redis script runs.
pub fn band(limit: u32, window_ms: u64, prev: u64, curr: u64, elapsed_ms: u64, cost: u64) -> Band {
    let w = u128::from(window_ms);
    let used = u128::from(prev) * (w - u128::from(elapsed_ms.min(window_ms)))
        + u128::from(curr + cost) * w;
    let capacity = u128::from(limit) * w;
    if used > capacity {
        Band::Over
    } else if 5 * used >= 4 * capacity {
        Band::Near
    } else {
        Band::Within
    }
}

/// What a client is told about one policy after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub remaining: u64,
    /// Seconds until more quota is available (on a denial, the earliest useful retry).
    pub reset_secs: u64,
}

pub fn quota(policy: &Policy, s: &WindowState, admitted: bool) -> Quota {
    let w = u128::from(policy.window_ms);
    let used = u128::from(s.prev) * (w - u128::from(s.elapsed_ms.min(policy.window_ms)))
        + u128::from(s.curr) * w;
    let capacity = u128::from(policy.limit) * w;
    let remaining = (capacity.saturating_sub(used) / w) as u64;
    let reset_ms = if admitted && remaining > 0 {
        policy.window_ms - s.elapsed_ms.min(policy.window_ms)
    } else {
        wait_ms(policy, s)
    };
    Quota {
        remaining,
        reset_secs: reset_ms.div_ceil(1000).max(1),
    }
}

/// Milliseconds until one more unit would be admitted.
fn wait_ms(policy: &Policy, s: &WindowState) -> u64 {
    let w = policy.window_ms;
    let limit = u64::from(policy.limit);
    let elapsed = s.elapsed_ms.min(w);
    if s.curr + 1 > limit {
        // Only the next slot can help; there the current count becomes the decaying one.
        let to_next = w - elapsed;
        let excess = s.curr + 1 - limit;
        to_next + (u128::from(w) * u128::from(excess)).div_ceil(u128::from(s.curr.max(1))) as u64
    } else if s.prev == 0 {
        0
    } else {
        // Wait for the previous slot's weight to decay enough. With at least as much room as
        // the previous slot held, its weight never stands in the way: no wait (this policy was
        // not the one that refused).
        let room = limit - 1 - s.curr;
        if room >= s.prev {
            return 0;
        }
        let needed = w - (u128::from(w) * u128::from(room) / u128::from(s.prev)) as u64;
        needed.saturating_sub(elapsed)
    }
}

/// `RateLimit-Policy` (IETF draft, structured-field list) for the policies that applied.
pub fn policy_header(policies: &[&Policy]) -> String {
    list(policies, |out, p| {
        write!(out, "\"{}\";q={};w={}", p.name, p.limit, p.window_secs())
    })
}

/// `RateLimit` (IETF draft) with each policy's remaining quota and reset.
pub fn ratelimit_header(items: &[(&Policy, Quota)]) -> String {
    list(items, |out, (p, q)| {
        write!(out, "\"{}\";r={};t={}", p.name, q.remaining, q.reset_secs)
    })
}

/// A structured-field list written into one string: these headers go out on every response.
fn list<T>(items: &[T], item: impl Fn(&mut String, &T) -> fmt::Result) -> String {
    let mut out = String::with_capacity(32 * items.len());
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = item(&mut out, x);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u32, window_s: u64) -> Policy {
        Policy {
            name: "t",
            limit,
            window_ms: window_s * 1000,
        }
    }

    #[test]
    fn fills_up_to_the_limit_in_one_slot() {
        let mut curr = 0;
        for _ in 0..5 {
            assert!(admits(5, 900_000, 0, curr, 10, 1));
            curr += 1;
        }
        assert!(!admits(5, 900_000, 0, curr, 10, 1));
    }

    #[test]
    fn no_double_burst_at_the_boundary() {
        // A full previous slot, one millisecond into the next: nothing fits yet.
        assert!(!admits(5, 900_000, 5, 0, 1, 1));
        // Halfway through, half the previous slot's weight is gone.
        assert!(admits(5, 900_000, 5, 1, 450_000, 1));
        assert!(!admits(5, 900_000, 5, 2, 450_000, 1));
    }

    #[test]
    fn bands_agree_with_admission() {
        assert_eq!(band(5, 900_000, 0, 2, 10, 1), Band::Within);
        assert_eq!(band(5, 900_000, 0, 3, 10, 1), Band::Near);
        assert_eq!(band(5, 900_000, 0, 4, 10, 1), Band::Near);
        assert_eq!(band(5, 900_000, 0, 5, 10, 1), Band::Over);
        for (prev, curr, elapsed) in [(5, 0, 1), (5, 1, 450_000), (5, 2, 450_000), (3, 3, 0)] {
            let over = band(5, 900_000, prev, curr, elapsed, 1) == Band::Over;
            assert_eq!(over, !admits(5, 900_000, prev, curr, elapsed, 1));
        }
    }

    #[test]
    fn remaining_and_reset_when_admitted() {
        let p = policy(5, 900);
        let s = WindowState {
            slot: 1,
            prev: 0,
            curr: 2,
            elapsed_ms: 100_000,
        };
        assert_eq!(
            quota(&p, &s, true),
            Quota {
                remaining: 3,
                reset_secs: 800
            }
        );
    }

    #[test]
    fn retry_after_when_the_current_slot_is_full() {
        let p = policy(5, 900);
        let s = WindowState {
            slot: 1,
            prev: 0,
            curr: 5,
            elapsed_ms: 100_000,
        };
        let q = quota(&p, &s, false);
        assert_eq!(q.remaining, 0);
        // 800 s to the next slot, then 1/5 of the window for the weight of 5 to fall to 4.
        assert_eq!(q.reset_secs, 800 + 180);
        // At that moment the request is admitted, and not a second earlier.
        assert!(admits(5, 900_000, 5, 0, 180_000, 1));
        assert!(!admits(5, 900_000, 5, 0, 179_000, 1));
    }

    #[test]
    fn retry_after_when_the_previous_slot_weighs() {
        let p = policy(10, 100);
        let s = WindowState {
            slot: 1,
            prev: 10,
            curr: 4,
            elapsed_ms: 20_000,
        };
        let q = quota(&p, &s, false);
        // Room for 5 more once the previous 10 weigh at most 5: at 50 s, 30 s from now.
        assert_eq!(q.reset_secs, 30);
        assert!(admits(10, 100_000, 10, 4, 50_000, 1));
    }

    #[test]
    fn a_policy_with_room_to_spare_resets_soon_when_another_refuses() {
        // Seen over HTTP: user 3/2s refused while api 100/2s had 2 in its previous slot and 5
        // now; the reset once came out as 2^64 - ms.
        let api = policy(100, 2);
        let s = WindowState {
            slot: 7,
            prev: 2,
            curr: 5,
            elapsed_ms: 300,
        };
        let q = quota(&api, &s, false);
        assert_eq!(q.remaining, 93);
        assert_eq!(q.reset_secs, 1);
        let roomy = WindowState { prev: 0, ..s };
        assert_eq!(quota(&api, &roomy, false).reset_secs, 1);
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let a = policy(5, 900);
        let b = Policy {
            name: "user",
            ..policy(100, 900)
        };
        assert_eq!(
            policy_header(&[&a, &b]),
            "\"t\";q=5;w=900, \"user\";q=100;w=900"
        );
        let q = Quota {
            remaining: 3,
            reset_secs: 40,
        };
        assert_eq!(ratelimit_header(&[(&a, q)]), "\"t\";r=3;t=40");
    }
}
