//! Media by URL for the session engine, over the SSRF-guarded egress client.

use gw_egress::{EgressError, GuardedClient};
use gw_sessions::{FetchError, FetchedMedia, MediaFetcher};

#[derive(Debug)]
pub struct EgressMediaFetcher {
    client: GuardedClient,
}

impl EgressMediaFetcher {
    pub fn new(client: GuardedClient) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl MediaFetcher for EgressMediaFetcher {
    async fn fetch(&self, url: &str, max_bytes: u64) -> Result<FetchedMedia, FetchError> {
        let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let response = self.client.get(url, limit).await.map_err(|e| match e {
            EgressError::Url(refusal) => FetchError::Refused(refusal.to_string()),
            EgressError::Resolved { detail, .. } => FetchError::Refused(detail),
            other => FetchError::Failed(other.to_string()),
        })?;
        if response.status.is_redirection() {
            // Redirects are not followed: the target would escape the address checks made for this URL.
            return Err(FetchError::Failed(format!(
                "HTTP {} (redirects are not followed; give the final URL)",
                response.status.as_u16()
            )));
        }
        if !response.status.is_success() {
            return Err(FetchError::Failed(format!("HTTP {}", response.status.as_u16())));
        }
        if response.truncated {
            return Err(FetchError::TooLarge { limit: max_bytes });
        }
        let content_type = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        Ok(FetchedMedia { bytes: response.body, content_type })
    }
}
