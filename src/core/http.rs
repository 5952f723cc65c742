//! The one way baton builds an HTTP client (the LLM clients, notifications, Syncthing, MCP over HTTP):
//! TLS set up, a connect timeout, baton's user agent. Each caller adds what is its own (pooling, retries,
//! a self-signed certificate) and builds.
use std::time::Duration;

/// `baton/<version>`.
pub const USER_AGENT: &str = concat!("baton/", env!("CARGO_PKG_VERSION"));

/// A client builder with TLS ready, `connect` as its connect timeout and baton's user agent.
pub fn builder(connect: Duration) -> reqwest::ClientBuilder {
    // reqwest is built without a default crypto provider; the first client installs ring (a second call,
    // or a provider installed by the embedding program, is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(connect)
        .user_agent(USER_AGENT)
}
