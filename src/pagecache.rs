//! The guard's side of the page cache: a route's rule may say its GET answers are user pages
//! worth keeping (`cache:<name>[:<param>=<default>...]`), so the one store call that charges
//! the limits also reads the page, and a page still tagged with the user's data version is
//! answered without waking the app. The app behind moves the version on when it writes (and
//! may hand the cache the page it read back), so the guard never needs to know what the data
//! is: which requests read which page is the rule's data.

use crate::answer::CACHE_HEADER;
use crate::config::Config;
use crate::http::{Request, Response};
use crate::store::{page_key, CacheProbe, Outcome, PageAt, Store, MAX_PAGE_BYTES};

/// A cached list: its name, and the query parameters (with their defaults) that tell its
/// pages apart, in the order they are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSpec {
    name: String,
    params: Vec<(String, u32)>,
}

impl PageSpec {
    /// `<name>[:<param>=<default>...]`, the part of a `cache:` word after its colon.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or_default();
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !plain(name) {
            return Err(format!(
                "guard_routes: \"cache:{text}\" does not name its pages like \"cache:bottles:page=1:limit=50\""
            ));
        }
        let mut params = Vec::new();
        for part in parts {
            let param = part
                .split_once('=')
                .filter(|(k, _)| plain(k))
                .and_then(|(k, v)| Some((k.to_string(), v.parse::<u32>().ok()?)));
            match param {
                Some(p) => params.push(p),
                None => {
                    return Err(format!(
                        "guard_routes: {part:?} in \"cache:{text}\" is not \"<parameter>=<default count>\""
                    ))
                }
            }
        }
        Ok(Self {
            name: name.to_string(),
            params,
        })
    }

    /// The name of the page a request asks for: the list's name and each parameter's count.
    /// `None` when a parameter is not a count, a query the guard does not name a page for (the
    /// app may refuse it; a raw query never becomes a key).
    pub fn page_name(&self, req: &Request) -> Option<String> {
        let mut name = self.name.clone();
        for (param, default) in &self.params {
            let count = match req.query_param(param) {
                None => *default,
                Some(raw) => raw.parse::<u32>().ok()?,
            };
            name.push(':');
            name.push_str(&count.to_string());
        }
        Some(name)
    }
}

/// The page a request may be answered with: the key of the page its rule names for a GET by
/// a verified user, while the cache is on.
pub fn page_for(
    spec: Option<&PageSpec>,
    req: &Request,
    config: &Config,
    user: Option<i64>,
) -> Option<String> {
    let (spec, user) = (spec?, user?);
    config.page_cache_ms?;
    if req.method != "GET" {
        return None;
    }
    Some(page_key(user, &spec.page_name(req)?))
}

/// What the check reads of the cache: the page, or for any other request of a verified user
/// that may write, the data version (which the app's write moves on from), when the app keeps
/// pages at all.
pub fn probe<'a>(
    page: Option<&'a str>,
    req: &Request,
    config: &Config,
    user: Option<i64>,
) -> CacheProbe<'a> {
    match page {
        Some(key) => CacheProbe::Page(key),
        None if config.page_cache_ms.is_some()
            && config.routes.keeps_pages()
            && user.is_some()
            && !matches!(req.method.as_str(), "GET" | "HEAD") =>
        {
            CacheProbe::Version
        }
        None => CacheProbe::None,
    }
}

/// The answer the check read from the cache, if it found the page at the current version.
pub fn hit(outcome: Option<&mut Outcome>) -> Option<Response> {
    let body = outcome?.page.take()?;
    let mut resp = Response {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    };
    resp.set_header(CACHE_HEADER, "hit");
    Some(resp)
}

/// Keeps the app's answer to a page the cache missed, tagged with the data version the check
/// read (a write since then has moved the version on, so the page is never served stale).
/// What failed is returned for the log; the answer stands either way.
pub async fn keep(
    page: Option<&str>,
    outcome: Option<&Outcome>,
    resp: &mut Response,
    config: &Config,
    store: &dyn Store,
) -> Option<String> {
    let (key, o, ttl_ms) = (page?, outcome?, config.page_cache_ms?);
    if resp.status != 200 {
        return None;
    }
    resp.set_header(CACHE_HEADER, "miss");
    if resp.body.len() > MAX_PAGE_BYTES {
        return None;
    }
    let page = PageAt {
        key,
        version: o.data_version,
        body: &resp.body,
        ttl_ms,
    };
    let e = store.keep_page(page).await.err()?;
    Some(format!("could not cache a page: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(query: &str) -> Request {
        let target = format!("/api/inventory?{query}");
        Request::new("GET".into(), &target, Vec::new(), Vec::new())
    }

    #[test]
    fn pages_are_named_by_their_counts() {
        let spec = PageSpec::parse("bottles:page=1:limit=50").expect("parses");
        assert_eq!(spec.page_name(&get("")).as_deref(), Some("bottles:1:50"));
        assert_eq!(
            spec.page_name(&get("limit=1&page=2")).as_deref(),
            Some("bottles:2:1")
        );
        assert_eq!(
            spec.page_name(&get("page=02&other=x")).as_deref(),
            Some("bottles:2:50")
        );
        for raw in ["page=abc", "page=", "limit=-1", "page=99999999999"] {
            assert_eq!(spec.page_name(&get(raw)), None, "{raw}");
        }
        let plain = PageSpec::parse("favorites").expect("parses");
        assert_eq!(
            plain.page_name(&get("page=7")).as_deref(),
            Some("favorites")
        );
    }

    #[test]
    fn bad_cache_words_are_named() {
        for bad in [
            "",
            "a b",
            "bottles:page",
            "bottles:page=x",
            "bottles:=1",
            "x:y:",
        ] {
            let e = PageSpec::parse(bad).expect_err(bad);
            assert!(e.contains("guard_routes"), "{e}");
        }
    }
}
