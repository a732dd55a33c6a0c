//! Spin 4.1's instance reuse settings for WASI 0.3 components: each a value or a half-open range
//! (`1..8`, `500ms..2s`) from which every new instance draws its own, as `spin up` takes them.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span<T> {
    Value(T),
    /// From the first (included) to the second (excluded).
    Between(T, T),
}

impl<T: Copy> Span<T> {
    fn parse(s: &str, one: impl Fn(&str) -> Result<T, String>) -> Result<Self, String> {
        match s.split_once("..") {
            Some((a, b)) => Ok(Self::Between(one(a.trim())?, one(b.trim())?)),
            None => Ok(Self::Value(one(s.trim())?)),
        }
    }
}

impl Span<usize> {
    pub fn parse_count(s: &str) -> Result<Self, String> {
        let span = Self::parse(s, |v| {
            v.parse::<usize>()
                .map_err(|e| format!("expected a number or a range like 1..8, got {s:?}: {e}"))
        })?;
        match span {
            Span::Value(0) => Err("must be at least 1".into()),
            Span::Between(a, b) if a == 0 || a >= b => {
                Err(format!("{s:?}: a range from at least 1 to a larger end"))
            }
            span => Ok(span),
        }
    }

    pub fn pick(self) -> usize {
        match self {
            Span::Value(v) => v,
            Span::Between(a, b) => a + (random() % (b - a) as u64) as usize,
        }
    }
}

impl Span<Duration> {
    pub fn parse_duration(s: &str) -> Result<Self, String> {
        let span = Self::parse(s, duration)?;
        match span {
            Span::Between(a, b) if a >= b => Err(format!("{s:?}: the range is empty")),
            span => Ok(span),
        }
    }

    pub fn pick(self) -> Duration {
        match self {
            Span::Value(v) => v,
            Span::Between(a, b) => {
                let width = u64::try_from((b - a).as_nanos()).unwrap_or(u64::MAX);
                a + Duration::from_nanos(random() % width)
            }
        }
    }
}

/// A duration as Spin writes them: a bare number of seconds, or `s`, `ms`, `us`/`μs`, `ns`.
fn duration(v: &str) -> Result<Duration, String> {
    let error = || format!("expected a number with s, ms, us or ns, got {v:?}");
    type Unit = (&'static str, fn(u64) -> Duration);
    let units: [Unit; 6] = [
        ("ms", Duration::from_millis),
        ("us", Duration::from_micros),
        ("μs", Duration::from_micros),
        ("ns", Duration::from_nanos),
        ("s", Duration::from_secs),
        ("", Duration::from_secs),
    ];
    units
        .iter()
        .find_map(|(suffix, make)| {
            v.strip_suffix(suffix)
                .and_then(|n| n.parse::<u64>().ok())
                .map(make)
        })
        .ok_or_else(error)
}

/// A fresh random number: enough to spread instances over a range, nothing more.
fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ranges() {
        assert_eq!(Span::parse_count("128"), Ok(Span::Value(128)));
        assert_eq!(Span::parse_count("1..8"), Ok(Span::Between(1, 8)));
        assert!(Span::parse_count("0").is_err());
        assert!(Span::parse_count("8..8").is_err());
        assert!(Span::parse_count("x").is_err());
        for _ in 0..100 {
            assert!((1..8).contains(&Span::Between(1, 8).pick()));
        }
    }

    #[test]
    fn durations_as_spin_writes_them() {
        let s = Duration::from_secs;
        assert_eq!(Span::parse_duration("1"), Ok(Span::Value(s(1))));
        assert_eq!(Span::parse_duration("2s"), Ok(Span::Value(s(2))));
        assert_eq!(
            Span::parse_duration("500ms..2s"),
            Ok(Span::Between(Duration::from_millis(500), s(2)))
        );
        assert_eq!(
            Span::parse_duration("10us"),
            Ok(Span::Value(Duration::from_micros(10)))
        );
        assert!(Span::parse_duration("1m").is_err());
        assert!(Span::parse_duration("2s..1s").is_err());
        let d = Span::Between(s(1), s(2)).pick();
        assert!(d >= s(1) && d < s(2));
    }
}
