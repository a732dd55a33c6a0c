//! The guard on its own, for any HTTP app behind it (Spin 4.1 middleware): what each route asks
//! of a request is data (`guard_routes`, read by `rules`), not code, so the same guard fronts
//! AlcheMix or any other component. It names the client, charges its limits and checks its
//! token and the token's revocation in one store call, then either refuses the request or lets
//! it through with the identity it verified in request headers of its own.

use crate::answer::{Headers, DEGRADED_HEADER};
use crate::chain::{CLIENT_HEADER, IDENTITY_PREFIX, USER_HEADER};
use crate::config::Config;
use crate::cors;
use crate::error::ApiError;
use crate::http::{json_object, Request, Response};
use crate::identity;
use crate::password;
use crate::policy::Policy;
use crate::ratelimit::{self, admits, Quota};
use crate::requestlog::Trace;
use crate::rules::Rule;
use crate::store::{CacheProbe, Limit, Outcome, Store, TokenRef};
use crate::token::{self, Claims, Keys};

/// What a route asks of one request, worked out before the store is asked: the client, the
/// token's verification (if the route wants one) and the limits to charge.
pub struct Asked {
    /// A credential-guessing route (`auth`): a success gives its unit back.
    refunds_success: bool,
    client: String,
    auth: Option<Result<(Claims, String), ApiError>>,
    limits: Vec<Limit>,
}

impl Asked {
    /// The user of a verified token (revocation not yet checked).
    pub fn user_id(&self) -> Option<i64> {
        match &self.auth {
            Some(Ok((claims, _))) => Some(claims.user_id),
            _ => None,
        }
    }
}

/// A request the guard let through: the headers its response will carry, and what settling
/// the response needs.
pub struct Admitted {
    /// A credential-guessing route (`auth`): a success gives its unit back.
    pub refunds_success: bool,
    pub limits: Vec<Limit>,
    pub outcome: Option<Outcome>,
    pub response_headers: Headers,
    /// The verified, unrevoked token's claims and digest, if the route asked for one.
    pub claims: Option<Claims>,
    pub token_digest: Option<String>,
    /// Set on the request the app receives, after every client-sent `x-edge-` header is gone.
    pub identity: Headers,
}

/// Works out what `rule` (the request's, found by the caller) asks of the request.
pub fn ask(
    req: &Request,
    config: &Config,
    keys: &Keys,
    rule: Option<&Rule>,
    now_ms: i64,
    trace: &mut Trace,
) -> Asked {
    let client = identity::client_subject(req, config);
    trace.client = Some(client.clone());
    let Some(rule) = rule else {
        return Asked {
            refunds_success: false,
            client,
            auth: None,
            limits: Vec::new(),
        };
    };
    if trace.route.is_none() {
        trace.route = Some(rule.pattern.path_text());
    }
    let auth = rule
        .token
        .then(|| token::authenticate(req, keys, now_ms / 1000));
    let mut limits = Vec::new();
    if rule.auth {
        push(&mut limits, &config.auth_limit, &client);
    }
    if rule.login {
        if let Some(account) = account_key(req) {
            push(
                &mut limits,
                &config.login_limit,
                &format!("{client}:{account}"),
            );
        }
    }
    if rule.api {
        push(&mut limits, &config.api_limit, &client);
    }
    if let (true, Some(Ok((claims, _)))) = (rule.user, &auth) {
        push(
            &mut limits,
            &config.user_limit,
            &format!("u{}", claims.user_id),
        );
    }
    let asked = Asked {
        refunds_success: rule.auth,
        client,
        auth,
        limits,
    };
    trace.user_id = asked.user_id();
    asked
}

/// The guard's answer before the app sees the request: the limits charged and the token's
/// revocation read in one store call (with `cache`, what the app wants read on the way), then
/// either the refusal to send (`Err`) or the request let through.
pub async fn admit(
    asked: Asked,
    req: &Request,
    config: &Config,
    store: &dyn Store,
    cache: CacheProbe<'_>,
    errors: &mut Vec<String>,
) -> Result<Admitted, (ApiError, Headers)> {
    let Asked {
        refunds_success,
        client,
        auth,
        limits,
    } = asked;
    let token_ref = match &auth {
        Some(Ok((claims, digest))) => Some(TokenRef {
            digest,
            user_id: claims.user_id,
            version: claims.token_version,
            cache,
        }),
        _ => None,
    };
    let mut headers = Headers::new();
    let mut outcome = None;
    if !limits.is_empty() || token_ref.is_some() {
        let token_refused = matches!(auth, Some(Err(_)));
        match store.check(&limits, token_ref, token_refused).await {
            Ok(o) => outcome = Some(o),
            Err(e) if config.fails_open(&req.method, &req.path) => {
                errors.push(format!("store unavailable, serving open: {e:?}"));
                headers.push((DEGRADED_HEADER.into(), "store-unavailable".into()));
            }
            Err(e) => return Err((ApiError::from(e), headers)),
        }
    }
    if let Some(o) = &outcome {
        headers.extend(limit_headers(&limits, o));
        if !o.admitted {
            return Err((too_many(&limits, o), headers));
        }
    }
    let mut identity = vec![(CLIENT_HEADER.to_string(), client)];
    let (claims, token_digest) = match auth {
        Some(Ok((claims, digest))) => {
            if let Some(o) = &outcome {
                if let Err(e) = token_standing(&claims, o) {
                    return Err((e, headers));
                }
            }
            identity.push((USER_HEADER.to_string(), claims.user_id.to_string()));
            (Some(claims), Some(digest))
        }
        Some(Err(e)) => return Err((e, headers)),
        None => (None, None),
    };
    Ok(Admitted {
        refunds_success,
        limits,
        outcome,
        response_headers: headers,
        claims,
        token_digest,
        identity,
    })
}

/// The headers the app receives: the client's, less every one the guard owns, plus the
/// identity the guard verified.
pub fn forwarded_headers(req: &Request, identity: &Headers) -> Headers {
    req.headers
        .iter()
        .filter(|(name, _)| !name.starts_with(IDENTITY_PREFIX))
        .cloned()
        .chain(identity.iter().cloned())
        .collect()
}

/// Settles the app's answer: a successful login gives back its unit, and the response gets
/// the guard's headers (any `x-edge-` header of the app's is dropped: those are the guard's).
/// Failures here never change the answer; they are returned for the log.
pub async fn settle(
    admitted: &Admitted,
    resp: &mut Response,
    store: &dyn Store,
    errors: &mut Vec<String>,
) {
    refund(admitted, resp.is_success(), store, errors).await;
    resp.headers
        .retain(|(name, _)| !name.starts_with(IDENTITY_PREFIX));
    resp.headers
        .extend(admitted.response_headers.iter().cloned());
}

/// A successful login or signup gives back its own per-address unit and clears the account's
/// failures.
pub async fn refund(
    admitted: &Admitted,
    succeeded: bool,
    store: &dyn Store,
    errors: &mut Vec<String>,
) {
    if let (true, true, Some(o)) = (succeeded, admitted.refunds_success, &admitted.outcome) {
        errors.extend(refund_login(&admitted.limits, o, store).await);
    }
}

/// The answer to a preflight: the guard's alone, nothing behind it is asked.
pub fn preflight(req: &Request, config: &Config) -> Response {
    cors::preflight(req.header("origin"), &config.cors_origins)
}

/// The account a login names, as a digest (keys never hold an email address).
pub fn account_key(req: &Request) -> Option<String> {
    let body = json_object(&req.body)?;
    let email = password::normalize_email(body.get("email")?.as_str()?)?;
    Some(crate::token::digest(&email)[..32].to_string())
}

/// A verified token's standing in the store: revoked, or below its user's version floor.
pub fn token_standing(claims: &Claims, o: &Outcome) -> Result<(), ApiError> {
    if o.revoked {
        return Err(ApiError::Unauthorized(
            "Token has been revoked. Please login again.",
        ));
    }
    if claims.token_version < o.min_version {
        return Err(ApiError::Unauthorized(
            "Token has been invalidated. Please login again.",
        ));
    }
    Ok(())
}

pub fn push(limits: &mut Vec<Limit>, policy: &Option<Policy>, subject: &str) {
    if let Some(policy) = policy {
        limits.push(Limit {
            policy: policy.clone(),
            subject: subject.to_string(),
            cost: 1,
        });
    }
}

/// A successful login or signup gives back its own per-IP unit (only failures stay counted,
/// and earlier failures from the address still count), and clears the account's failures.
/// Returns what failed, for the log: the answer stands either way.
pub async fn refund_login(limits: &[Limit], o: &Outcome, store: &dyn Store) -> Vec<String> {
    let mut failures = Vec::new();
    for (limit, window) in limits.iter().zip(&o.windows) {
        let result = match limit.policy.name {
            "auth" => store.refund(limit, window.slot).await,
            "login" => store.reset(limit, window.slot).await,
            _ => Ok(()),
        };
        if let Err(e) = result {
            failures.push(format!("settling a successful login failed: {e:?}"));
        }
    }
    failures
}

fn quotas<'a>(limits: &'a [Limit], o: &Outcome) -> Vec<(&'a Policy, Quota)> {
    limits
        .iter()
        .zip(&o.windows)
        .map(|(l, w)| (&l.policy, ratelimit::quota(&l.policy, w, o.admitted)))
        .collect()
}

pub fn limit_headers(limits: &[Limit], o: &Outcome) -> Headers {
    let items = quotas(limits, o);
    let Some((tightest, q)) = items.iter().min_by_key(|(_, q)| q.remaining) else {
        return Headers::new();
    };
    let policies: Vec<&Policy> = items.iter().map(|(p, _)| *p).collect();
    let reset_at = o.now_ms / 1000 + q.reset_secs as i64;
    vec![
        (
            "ratelimit-policy".into(),
            ratelimit::policy_header(&policies),
        ),
        ("ratelimit".into(), ratelimit::ratelimit_header(&items)),
        ("x-ratelimit-limit".into(), tightest.limit.to_string()),
        ("x-ratelimit-remaining".into(), q.remaining.to_string()),
        ("x-ratelimit-reset".into(), reset_at.to_string()),
    ]
}

pub fn too_many(limits: &[Limit], o: &Outcome) -> ApiError {
    let denied: Vec<(&Policy, Quota)> = limits
        .iter()
        .zip(&o.windows)
        .filter(|(l, w)| {
            !admits(
                l.policy.limit,
                l.policy.window_ms,
                w.prev,
                w.curr,
                w.elapsed_ms,
                l.cost,
            )
        })
        .map(|(l, w)| (&l.policy, ratelimit::quota(&l.policy, w, false)))
        .collect();
    // The policy a client waits longest for is the one it is told about.
    let Some((policy, quota)) = denied.iter().max_by_key(|(_, q)| q.reset_secs) else {
        return ApiError::Internal("a refusal without a refusing policy".into());
    };
    let retry_after = quota.reset_secs;
    let message = if denied.iter().any(|(p, _)| p.name == "auth") {
        format!(
            "Too many authentication attempts. Please try again in {} minute(s).",
            retry_after.div_ceil(60)
        )
    } else {
        format!("Rate limit exceeded. Try again in {retry_after} second(s).")
    };
    ApiError::TooManyRequests {
        message,
        retry_after,
        policy: policy.name,
        limit: policy.limit,
        window_secs: policy.window_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_sent_identity_headers_never_reach_the_app() {
        let req = Request::new(
            "GET".into(),
            "/x",
            vec![
                ("x-edge-user-id".into(), "1".into()),
                ("x-edge-client".into(), "forged".into()),
                ("accept".into(), "*/*".into()),
            ],
            Vec::new(),
        );
        let identity = vec![(CLIENT_HEADER.to_string(), "10.0.0.1".to_string())];
        let forwarded = forwarded_headers(&req, &identity);
        assert_eq!(
            forwarded,
            vec![
                ("accept".to_string(), "*/*".to_string()),
                (CLIENT_HEADER.to_string(), "10.0.0.1".to_string()),
            ]
        );
    }
}
