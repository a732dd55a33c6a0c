//! edge-guard: the guard alone, as Spin 4.1 HTTP middleware (a component that imports and
//! exports `wasi:http/handler@0.3.0`). It names the client, charges the limits and checks the
//! token and its revocation in one store call; a refusal is answered here and never reaches
//! the app behind it. A request it admits goes to the next handler with the identity it
//! verified in `x-edge-` headers (any a client sent are removed first), and the answer comes
//! back through it for the login refund and the RateLimit, CORS and security headers.
//!
//! What each route asks is the `guard_routes` variable (`rules::Routes`), AlcheMix's routes
//! when it is empty or not declared. Like any middleware, it sees the variables, outbound hosts and
//! SQLite databases of the component it stands in front of only when its manifest entry says
//! `inherit_configuration = true`.

#![cfg(target_arch = "wasm32")]

use alchemix_edge::answer::{self, Headers};
use alchemix_edge::chain::{DATA_VERSION_HEADER, REQUEST_ID_HEADER, ROUTE_HEADER, SCHEMA_HEADER};
use alchemix_edge::error::ApiError;
use alchemix_edge::guard::{self, Admitted};
use alchemix_edge::host;
use alchemix_edge::http::{header_entry, Request, Response};
use alchemix_edge::pagecache;
use alchemix_edge::requestlog::{Decision, Trace};
use alchemix_edge::store::{self, CacheProbe, Store};
use alchemix_edge_adapter_wasip3::{export_handler, outgoing_body, Instance, PassedBody, Reply};
use spin_sdk::wasip3::http::types;

export_handler!(serve);

async fn serve(req: &Request, instance: &Instance) -> Reply {
    let started_ms = host::now_ms();
    let config = &*instance.config;
    let link = instance.link();
    let store = store::open(config, &*instance.db, &link, started_ms);
    let mut trace = Trace::default();
    let mut errors = Vec::new();
    let mut passed = None;
    let request_id = answer::new_request_id(&host::random);
    let (mut resp, decision) = if req.method == "OPTIONS" {
        trace.route = Some("preflight".into());
        (guard::preflight(req, config), Decision::Allowed)
    } else {
        let rule = config.routes.find(&req.method, &req.path);
        let keys = config.keys();
        let asked = guard::ask(req, config, keys, rule, started_ms, &mut trace);
        let user = asked.user_id();
        let page = pagecache::page_for(rule.and_then(|r| r.page()), req, config, user);
        let probe = pagecache::probe(page.as_deref(), req, config, user);
        let admitted = guard::admit(asked, req, config, &*store, probe, &mut errors).await;
        let result = match admitted {
            Ok(mut admitted) => match pagecache::hit(admitted.outcome.as_mut()) {
                // A page the cache holds is answered here: the app is not asked.
                Some(mut resp) => {
                    resp.headers
                        .extend(admitted.response_headers.iter().cloned());
                    Ok(resp)
                }
                None => {
                    let keeps_page = page.is_some() && admitted.outcome.is_some();
                    let app = next(req, &admitted, &request_id, probe, keeps_page)
                        .await
                        .map(|(resp, body)| {
                            passed = body;
                            resp
                        });
                    let mut settled =
                        settle(app, &admitted, &*store, &mut trace, &mut errors).await;
                    if let Ok(resp) = &mut settled {
                        let outcome = admitted.outcome.as_ref();
                        let kept = pagecache::keep(page.as_deref(), outcome, resp, config, &*store);
                        errors.extend(kept.await);
                    }
                    settled
                }
            },
            Err(refusal) => Err(refusal),
        };
        answer::decided(result, |detail| errors.push(detail))
    };
    answer::finish(&mut resp, Some(req), &config.cors_origins, request_id);
    answer::log(req, &resp, config, decision, trace, &errors, started_ms);
    Reply { resp, passed }
}

/// The app's answer to an admitted request, settled by the guard; the route the app says it
/// matched goes to the request's log line.
async fn settle(
    app: Result<Response, String>,
    admitted: &Admitted,
    store: &dyn Store,
    trace: &mut Trace,
    errors: &mut Vec<String>,
) -> Result<Response, (ApiError, Headers)> {
    let mut resp = app.map_err(|problem| {
        let e = ApiError::BadGateway(format!("the app behind the guard failed: {problem}"));
        (e, admitted.response_headers.clone())
    })?;
    if let Some(route) = resp.header(ROUTE_HEADER) {
        trace.route = Some(route.to_string());
    }
    guard::settle(admitted, &mut resp, store, errors).await;
    Ok(resp)
}

/// The app's answer, its body read only when `keeps_page` (the page cache may keep it).
async fn next(
    req: &Request,
    admitted: &Admitted,
    request_id: &str,
    probe: CacheProbe<'_>,
    keeps_page: bool,
) -> Result<(Response, Option<PassedBody>), String> {
    // Built as the host's own request type rather than through the SDK's `http` conversion,
    // so a request with no body (every GET) is handed on with no body stream to write and
    // read across the hop.
    // The host takes the authority apart from the headers and refuses a `host` one.
    let mut list: Vec<(String, Vec<u8>)> = guard::forwarded_headers(req, &admitted.identity)
        .into_iter()
        .filter(|(name, _)| name != "host")
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    list.push((REQUEST_ID_HEADER.into(), request_id.as_bytes().to_vec()));
    if let Some(o) = &admitted.outcome {
        list.push((
            SCHEMA_HEADER.into(),
            o.schema_version.to_string().into_bytes(),
        ));
        if probe == CacheProbe::Version {
            list.push((
                DATA_VERSION_HEADER.into(),
                o.data_version.to_string().into_bytes(),
            ));
        }
    }
    let fields = types::Fields::from_list(&list)
        .map_err(|e| format!("the request's headers were refused: {e:?}"))?;
    let (contents, trailers) = outgoing_body(req.body.clone());
    let (request, _sent) = types::Request::new(fields, contents, trailers, None);
    let method = http::Method::from_bytes(req.method.as_bytes())
        .map_err(|e| format!("the request could not be rebuilt: {e}"))?;
    let target = if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    };
    request
        .set_method(&method.into())
        .and_then(|()| request.set_path_with_query(Some(&target)))
        .and_then(|()| request.set_authority(req.header("host")))
        .map_err(|()| "the request could not be rebuilt".to_string())?;
    let resp = spin_sdk::http::next(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (parts, mut body) = resp.into_parts();
    let raw = body
        .take_unstarted()
        .ok_or_else(|| "its body was taken before the guard read it".to_string())?;
    let status = parts.status.as_u16();
    let passed = PassedBody::of(raw);
    // Only a page the cache may keep is read here; any other body goes to the client as the
    // app wrote it, length and all, without crossing the guard's memory.
    let whole = keeps_page && status == 200;
    let (bytes, passed) = if whole {
        let bytes = passed
            .read()
            .await
            .map_err(|()| "its body could not be read".to_string())?;
        (bytes, None)
    } else {
        (Vec::new(), Some(passed))
    };
    let headers = parts
        .headers
        .iter()
        // The host frames the body; a body read whole is framed again by its new length.
        .filter(|(name, _)| {
            *name != http::header::TRANSFER_ENCODING
                && (!whole || *name != http::header::CONTENT_LENGTH)
        })
        .map(|(k, v)| header_entry(k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let resp = Response {
        status,
        headers,
        body: bytes,
    };
    Ok((resp, passed))
}
