//! Rate-limit policies as data: `"5/15m"` is five requests per fifteen minutes.

use std::fmt;

/// One named limit: at most `limit` units per sliding `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: &'static str,
    pub limit: u32,
    pub window_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Policy {
    /// Parses `<count>/<duration>`; `off` disables the policy (`None`).
    pub fn parse(name: &'static str, text: &str) -> Result<Option<Self>, PolicyError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || {
            PolicyError(format!(
                "{name}: {text:?} is not a rate limit like \"5/15m\" (count/window) or \"off\""
            ))
        };
        let (count, window) = text.split_once('/').ok_or_else(bad)?;
        let limit: u32 = count.trim().parse().map_err(|_| bad())?;
        if limit == 0 || limit > 1_000_000_000 {
            return Err(PolicyError(format!(
                "{name}: the count must be between 1 and 1000000000"
            )));
        }
        let window_ms = parse_duration_ms(window.trim()).ok_or_else(bad)?;
        Ok(Some(Self {
            name,
            limit,
            window_ms,
        }))
    }

    pub fn window_secs(&self) -> u64 {
        self.window_ms.div_ceil(1000)
    }
}

/// `900`, `900s`, `15m`, `1h`, `7d` → milliseconds; between one second and one year.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit_ms = match unit {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    let ms = n.checked_mul(unit_ms)?;
    (1_000..=365 * 86_400_000).contains(&ms).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_windows() {
        let p = Policy::parse("auth", "5/15m").unwrap().unwrap();
        assert_eq!((p.limit, p.window_ms), (5, 900_000));
        assert_eq!(p.window_secs(), 900);
        let p = Policy::parse("api", " 100 / 1h ").unwrap().unwrap();
        assert_eq!((p.limit, p.window_ms), (100, 3_600_000));
        assert_eq!(Policy::parse("x", "OFF").unwrap(), None);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "5",
            "0/1m",
            "5/0s",
            "5/15x",
            "-1/1m",
            "5/500ms",
            "a/1m",
            "5/999999d",
        ] {
            assert!(Policy::parse("x", bad).is_err(), "{bad}");
        }
    }
}
