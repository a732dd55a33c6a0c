//! Fleet-wide decision counters and their Prometheus text for `GET /metrics`. A check counts
//! its request inside the store's one call (the Redis script, or the SQLite transaction), in
//! buckets of one minute of the store's clock that expire; the endpoint sums the buckets of
//! trailing windows, so any instance answers for the whole fleet.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::policy::Policy;
use crate::ratelimit::Band;

/// One bucket per minute of the store's clock (the Redis script has the same figure).
pub const BUCKET_MS: i64 = 60_000;

/// A bucket lives one minute longer than the widest window, so no window sums one that is
/// about to expire.
pub const BUCKET_TTL_SECS: i64 = 61 * 60;

/// The trailing windows summed, each as the current bucket and the ones before it.
pub const WINDOWS: [(&str, i64); 2] = [("5m", 5), ("1h", 60)];

/// Buckets are `ae:mx:<minute>` in Redis, each a hash of counter fields.
pub const BUCKET_PREFIX: &str = "ae:mx";

/// What a request the store checked came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Limited,
    Revoked,
    Unauthenticated,
}

impl Verdict {
    const ALL: [Self; 4] = [
        Self::Allowed,
        Self::Limited,
        Self::Revoked,
        Self::Unauthenticated,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Limited => "limited",
            Self::Revoked => "revoked",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// In the order the pipeline answers: limits first, then the token, then its revocation.
    pub fn of(admitted: bool, token_refused: bool, revoked: bool) -> Self {
        if !admitted {
            Self::Limited
        } else if token_refused {
            Self::Unauthenticated
        } else if revoked {
            Self::Revoked
        } else {
            Self::Allowed
        }
    }

    pub fn field(self) -> String {
        format!("d:{}", self.name())
    }
}

/// The per-policy counters, in Envoy ratelimit's terms: every check is a hit, and a check
/// that leaves the policy near or over its limit counts there too.
const POLICY_COUNTERS: [(&str, &str); 3] = [
    ("total_hits", "Checks of the policy"),
    (
        "near_limit",
        "Checks that left the policy at 80% or more of its limit",
    ),
    ("over_limit", "Checks the policy refused"),
];

fn policy_field(policy: &str, counter: &str) -> String {
    format!("p:{policy}:{counter}")
}

/// The fields one policy's check counts.
pub fn policy_fields(policy: &str, band: Band) -> Vec<String> {
    let mut fields = vec![policy_field(policy, "total_hits")];
    match band {
        Band::Within => {}
        Band::Near => fields.push(policy_field(policy, "near_limit")),
        Band::Over => fields.push(policy_field(policy, "over_limit")),
    }
    fields
}

/// Counter totals by field, one per window of [`WINDOWS`].
pub type Totals = BTreeMap<String, [u64; 2]>;

/// The Prometheus text exposition (format 0.0.4) of the fleet's counters and the limits in
/// force. Every series is present, zero when nothing was counted, so alerts never see a gap.
pub fn render(totals: &Totals, policies: &[&Policy]) -> String {
    let mut out = String::with_capacity(2048);
    // Writing to a String cannot fail.
    let _ = write_series(&mut out, totals, policies);
    out
}

fn write_series(out: &mut String, totals: &Totals, policies: &[&Policy]) -> std::fmt::Result {
    let count = |field: &str, window: usize| totals.get(field).map_or(0, |c| c[window]);
    gauge(
        out,
        "alchemix_edge_decisions",
        "Requests the store checked, by decision, summed across the fleet over the trailing window",
    )?;
    for v in Verdict::ALL {
        for (w, (window, _)) in WINDOWS.iter().enumerate() {
            let n = count(&v.field(), w);
            writeln!(
                out,
                "alchemix_edge_decisions{{decision=\"{}\",window=\"{window}\"}} {n}",
                v.name()
            )?;
        }
    }
    for (counter, help) in POLICY_COUNTERS {
        let name = format!("alchemix_edge_ratelimit_{counter}");
        let help = format!("{help}, summed across the fleet over the trailing window");
        gauge(out, &name, &help)?;
        for p in policies {
            for (w, (window, _)) in WINDOWS.iter().enumerate() {
                let n = count(&policy_field(p.name, counter), w);
                writeln!(
                    out,
                    "{name}{{policy=\"{}\",window=\"{window}\"}} {n}",
                    p.name
                )?;
            }
        }
    }
    gauge(
        out,
        "alchemix_edge_ratelimit_limit",
        "Requests the policy admits per window, as configured",
    )?;
    for p in policies {
        writeln!(
            out,
            "alchemix_edge_ratelimit_limit{{policy=\"{}\"}} {}",
            p.name, p.limit
        )?;
    }
    gauge(
        out,
        "alchemix_edge_ratelimit_window_seconds",
        "The policy's sliding window, as configured",
    )?;
    for p in policies {
        writeln!(
            out,
            "alchemix_edge_ratelimit_window_seconds{{policy=\"{}\"}} {}",
            p.name,
            p.window_secs()
        )?;
    }
    Ok(())
}

/// Windowed sums go up and down, so they are gauges, not counters.
fn gauge(out: &mut String, name: &str, help: &str) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}.")?;
    writeln!(out, "# TYPE {name} gauge")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_pipeline_order() {
        assert_eq!(Verdict::of(false, true, true), Verdict::Limited);
        assert_eq!(Verdict::of(true, true, true), Verdict::Unauthenticated);
        assert_eq!(Verdict::of(true, false, true), Verdict::Revoked);
        assert_eq!(Verdict::of(true, false, false), Verdict::Allowed);
    }

    #[test]
    fn renders_every_series_with_zeros() {
        let api = Policy {
            name: "api",
            limit: 100,
            window_ms: 900_000,
        };
        let mut totals = Totals::new();
        totals.insert(Verdict::Limited.field(), [3, 7]);
        totals.insert(policy_field("api", "over_limit"), [3, 7]);
        let text = render(&totals, &[&api]);
        assert!(text.contains("alchemix_edge_decisions{decision=\"limited\",window=\"5m\"} 3\n"));
        assert!(text.contains("alchemix_edge_decisions{decision=\"limited\",window=\"1h\"} 7\n"));
        assert!(text.contains("alchemix_edge_decisions{decision=\"allowed\",window=\"1h\"} 0\n"));
        assert!(
            text.contains("alchemix_edge_ratelimit_over_limit{policy=\"api\",window=\"5m\"} 3\n")
        );
        assert!(
            text.contains("alchemix_edge_ratelimit_near_limit{policy=\"api\",window=\"1h\"} 0\n")
        );
        assert!(text.contains("alchemix_edge_ratelimit_limit{policy=\"api\"} 100\n"));
        assert!(text.contains("alchemix_edge_ratelimit_window_seconds{policy=\"api\"} 900\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn a_check_counts_a_hit_and_its_band() {
        assert_eq!(policy_fields("auth", Band::Within), ["p:auth:total_hits"]);
        assert_eq!(
            policy_fields("auth", Band::Over),
            ["p:auth:total_hits", "p:auth:over_limit"]
        );
    }
}
