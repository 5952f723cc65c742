//! Who may use the dashboard, checked before any handler runs (the page can start jobs and spend money).
//!
//! - **Host**: a request whose `Host` is not the listen address, `localhost` or a loopback address (with the
//!   listen port) is refused with 403, so a web page on another origin cannot reach the dashboard through
//!   a DNS name it re-points at 127.0.0.1 (DNS rebinding). Bound to an unspecified address (`0.0.0.0`),
//!   baton cannot know the names it is reached by: any host name with the listen port passes, and every
//!   request needs the token.
//! - **Token**, as Jupyter does: each start has one (`--token`, the fleet's `web = {token_env = …}`, else a
//!   random one); baton prints `http://ADDR/?token=…` once, and opening that link sets an `HttpOnly`,
//!   `SameSite=Strict` cookie, then redirects to the same path without the token (so it stays out of the
//!   address bar and history). A request carries the token as that cookie or `Authorization: Bearer …`.
//! - **Actions** (every method but GET and HEAD) need the token (401 without it) and must be same-origin
//!   (403): an `Origin` header must be this server's own, and a browser's `Sec-Fetch-Site` must say
//!   `same-origin` or `none`. A client that sends neither (curl with the bearer token) passes.
//! - **Reads** (pages, `/api/`, live streams) are open on loopback, as the CLI is to any local user; bound
//!   beyond loopback they need the token too.
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use crate::core::secret::Secret;

/// The rules of one server: its token and the names it answers to.
pub struct Access {
    token: Secret,
    digest: [u8; 32],
    listen: SocketAddr,
    /// Reads need no token (bound to loopback).
    reads_open: bool,
    cookie: String,
}

impl Access {
    pub fn new(token: Secret, listen: SocketAddr) -> Access {
        let digest = Sha256::digest(token.expose().as_bytes()).into();
        Access {
            token,
            digest,
            listen,
            reads_open: listen.ip().is_loopback(),
            // Cookies are not kept apart by port: two dashboards on one machine get two names.
            cookie: format!("baton_token_{}", listen.port()),
        }
    }

    /// The link that logs a browser in (printed once at start).
    pub fn login_url(&self) -> String {
        let host = if self.listen.ip().is_unspecified() {
            format!("localhost:{}", self.listen.port())
        } else {
            self.listen.to_string()
        };
        format!("http://{host}/?token={}", self.token.expose())
    }

    /// Compares digests, so the time taken says nothing about how much of a guess was right.
    fn is_token(&self, candidate: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        d == self.digest
    }

    /// Whether `host` (a `Host` header's value) names this server.
    pub fn host_ok(&self, host: &str) -> bool {
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        if port.parse::<u16>().ok() != Some(self.listen.port()) {
            return false;
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if self.listen.ip().is_unspecified() {
            return true;
        }
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == self.listen.ip() || (self.reads_open && ip.is_loopback()))
    }

    /// The request carries the token (cookie or bearer).
    fn authed(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.is_token(t.trim()));
        bearer
            || headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(cookie::Cookie::split_parse)
                .flatten()
                .any(|c| c.name() == self.cookie && self.is_token(c.value()))
    }

    /// The cookie that `?token=` sets.
    fn set_cookie(&self) -> String {
        cookie::Cookie::build((self.cookie.clone(), self.token.expose().to_string()))
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .path("/")
            .build()
            .to_string()
    }
}

/// Whether a request with these headers comes from this server's own pages (see the module's rules).
fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin
            .to_str()
            .is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}")));
    }
    match headers.get("sec-fetch-site").map(|v| v.to_str()) {
        None => true,
        Some(Ok(site)) => site == "same-origin" || site == "none",
        Some(Err(_)) => false,
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("baton web: {why}\n"),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The middleware: every request passes here first.
pub async fn check(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !access.host_ok(&host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this dashboard answers to its own address and localhost only (Host header refused)",
        );
    }
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    if read
        && let Ok(axum::extract::Query(TokenQuery { token: Some(token) })) =
            axum::extract::Query::<TokenQuery>::try_from_uri(req.uri())
    {
        if !access.is_token(&token) {
            return refuse(StatusCode::UNAUTHORIZED, "wrong token in the link");
        }
        let mut to = Redirect::to(req.uri().path()).into_response();
        if let Ok(v) = access.set_cookie().parse() {
            to.headers_mut().insert(header::SET_COOKIE, v);
        }
        return to;
    }
    let authed = access.authed(req.headers());
    if read {
        if !authed && !access.reads_open {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "open the link baton printed at start (it carries the token), or send `Authorization: Bearer TOKEN`",
            );
        }
        return next.run(req).await;
    }
    if !authed {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "an action needs the token: open the link baton printed at start, or send `Authorization: Bearer TOKEN`",
        );
    }
    if !same_origin(req.headers(), &host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "an action must come from the dashboard's own page (cross-origin request refused)",
        );
    }
    next.run(req).await
}

/// A random token: 32 bytes from the operating system, hex.
pub fn random_token() -> std::io::Result<Secret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(listen: &str) -> Access {
        Access::new(Secret::new("s3cret-token"), listen.parse().unwrap())
    }

    #[test]
    fn hosts_other_than_the_listen_address_and_localhost_are_refused() {
        let a = access("127.0.0.1:8787");
        for ok in [
            "127.0.0.1:8787",
            "localhost:8787",
            "LOCALHOST:8787",
            "[::1]:8787",
        ] {
            assert!(a.host_ok(ok), "{ok}");
        }
        for bad in [
            "evil.example:8787",
            "127.0.0.1:8788",
            "127.0.0.1",
            "",
            "localhost.evil.example:8787",
            "10.0.0.1:8787",
        ] {
            assert!(!a.host_ok(bad), "{bad}");
        }
        let lan = access("192.168.1.5:8787");
        assert!(lan.host_ok("192.168.1.5:8787") && lan.host_ok("localhost:8787"));
        assert!(!lan.host_ok("127.0.0.1:8787") && !lan.host_ok("nas.local:8787"));
        let any = access("0.0.0.0:8787");
        assert!(any.host_ok("nas.local:8787") && !any.host_ok("nas.local:80"));
    }

    #[test]
    fn the_token_is_read_from_the_cookie_or_the_bearer_header_only() {
        let a = access("127.0.0.1:8787");
        let mut h = HeaderMap::new();
        assert!(!a.authed(&h));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-token".parse().unwrap(),
        );
        assert!(a.authed(&h));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-tokeN".parse().unwrap(),
        );
        assert!(!a.authed(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; baton_token_8787=s3cret-token".parse().unwrap(),
        );
        assert!(a.authed(&h));
        // Another port's cookie is another dashboard's.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "baton_token_9999=s3cret-token".parse().unwrap(),
        );
        assert!(!a.authed(&h));
        let c = a.set_cookie();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        assert!(!format!("{:?}", a.token).contains("s3cret"));
    }

    #[test]
    fn cross_origin_actions_are_told_apart() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h, "127.0.0.1:8787"));
        h.insert(header::ORIGIN, "http://127.0.0.1:8787".parse().unwrap());
        assert!(same_origin(&h, "127.0.0.1:8787"));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h, "127.0.0.1:8787"));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h, "127.0.0.1:8787"));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h, "127.0.0.1:8787"));
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&h, "127.0.0.1:8787"));
    }

    #[test]
    fn random_tokens_differ() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a, b);
    }
}
