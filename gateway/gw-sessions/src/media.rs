//! Media by URL: the engine asks a [`MediaFetcher`] for the bytes when a send names a URL instead of carrying them.
//! The binary implements it over the SSRF-guarded egress client, so the engine knows nothing of HTTP.

/// What a fetch brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMedia {
    pub bytes: Vec<u8>,
    /// The response's `Content-Type` without parameters, if it sent one.
    pub content_type: Option<String>,
}

/// Why media could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one the gateway may fetch (scheme, length, or an address the egress policy refuses).
    #[error("{0}")]
    Refused(String),
    /// The body is larger than the kind of media allows; the fetch stopped at the limit.
    #[error("the media is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The server did not answer with the media (status, timeout, connection).
    #[error("{0}")]
    Failed(String),
}

/// Fetches media named by URL, reading at most `max_bytes` of the body.
#[async_trait::async_trait]
pub trait MediaFetcher: Send + Sync + std::fmt::Debug {
    async fn fetch(&self, url: &str, max_bytes: u64) -> Result<FetchedMedia, FetchError>;
}
