//! Elasticsearch / OpenSearch: the `_bulk` API with `create` actions, documents in Elastic
//! Common Schema ([`crate::format::ecs`]).
//!
//! `_id` is the event's stable id, so a batch sent again after a timeout or a partial
//! failure cannot index an event twice: the receiver answers 409 (version conflict) for the
//! ones it has, which counts as delivered. `create` also works with data streams (which
//! refuse `index`). Per-item answers decide the rest: 429 or 5xx items make the whole batch
//! go again (the delivered ones then come back as 409s); other 4xx items (a mapping
//! conflict) are refused for good and dead-lettered with the receiver's `type: reason`.

use futures::future::BoxFuture;
use gatehouse_config::{SecretRef, SinkConfig};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::http::{self, chunks};
use super::{Delivered, Shipped, Sink, SinkError};

/// Most bytes per `_bulk` request: Elastic recommends bulk requests of a few MB (the
/// server's `http.max_content_length` is 100 MB).
pub const MAX_REQUEST: usize = 5 * 1024 * 1024;

/// The Elasticsearch/OpenSearch sink.
pub struct ElasticSink {
    config: SinkConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    index: String,
    auth: Auth,
    max_request: usize,
}

enum Auth {
    None,
    ApiKey(SecretRef),
    Basic(String, SecretRef),
}

#[derive(Deserialize)]
struct BulkAnswer {
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, Item>>,
}

#[derive(Deserialize)]
struct Item {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

impl ElasticSink {
    /// Builds it from its config: `token` (an API key, sent as `ApiKey`) or
    /// `username` + `password` (basic), or neither (a cluster without security).
    pub fn new(config: &SinkConfig) -> Result<ElasticSink, SinkError> {
        let auth = match (&config.token, &config.username, &config.password) {
            (Some(t), None, None) => Auth::ApiKey(t.clone()),
            (None, Some(u), Some(p)) => Auth::Basic(u.clone(), p.clone()),
            (None, None, None) => Auth::None,
            _ => {
                return Err(SinkError::Config(format!(
                    "audit.sinks {}: set either token (API key) or username and password",
                    config.name
                )));
            }
        };
        Ok(ElasticSink {
            config: config.clone(),
            client: http::client(config)?,
            url: http::endpoint(config, "_bulk")?,
            index: config
                .index
                .clone()
                .unwrap_or_else(|| "gatehouse-audit".into()),
            auth,
            max_request: MAX_REQUEST,
        })
    }

    /// Sets the most bytes per request (tests of the splitting).
    pub fn with_max_request(mut self, bytes: usize) -> ElasticSink {
        self.max_request = bytes;
        self
    }

    fn authorization(&self) -> Result<Option<reqwest::header::HeaderValue>, SinkError> {
        use base64::Engine as _;
        Ok(match &self.auth {
            Auth::None => None,
            Auth::ApiKey(r) => {
                let key = http::secret(&self.config, "token", r)?;
                Some(http::credential_header(&self.config, "ApiKey", &key)?)
            }
            Auth::Basic(user, r) => {
                let password = http::secret(&self.config, "password", r)?;
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(http::credential_header(&self.config, "Basic", &pair)?)
            }
        })
    }

    /// The action line and document of each event (each ending in a newline).
    fn pairs(&self, batch: &[Shipped]) -> Vec<Vec<u8>> {
        batch
            .iter()
            .map(|s| {
                let action = json!({"create": {"_index": self.index, "_id": s.event.id}});
                let mut out = serde_json::to_vec(&action).unwrap_or_default();
                out.push(b'\n');
                let doc = crate::format::ecs::document(&s.event);
                serde_json::to_writer(&mut out, &doc).unwrap_or_default();
                out.push(b'\n');
                out
            })
            .collect()
    }

    /// Sends one `_bulk` request of `pairs` (batch positions from `offset`).
    async fn bulk(
        &self,
        auth: Option<&reqwest::header::HeaderValue>,
        pairs: &[Vec<u8>],
        offset: usize,
        done: &mut Delivered,
    ) -> Result<(), SinkError> {
        let what = format!("elasticsearch {}", self.config.name);
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(pairs.concat());
        if let Some(a) = auth {
            request = request.header(reqwest::header::AUTHORIZATION, a.clone());
        }
        let (status, after, body) = http::exchange(&what, request).await?;
        if !status.is_success() {
            return Err(http::failure_of(
                &what,
                status,
                after,
                &String::from_utf8_lossy(&body),
            ));
        }
        let answer: BulkAnswer = serde_json::from_slice(&body)
            .map_err(|e| SinkError::retry(format!("{what}: unreadable _bulk answer: {e}")))?;
        if !answer.errors {
            return Ok(());
        }
        if answer.items.len() != pairs.len() {
            return Err(SinkError::retry(format!(
                "{what}: _bulk answered {} items for {} documents",
                answer.items.len(),
                pairs.len()
            )));
        }
        let mut again = None;
        let mut refused = Vec::new();
        for (i, item) in answer.items.iter().enumerate() {
            let Some(item) = item.values().next() else {
                continue;
            };
            let code = StatusCode::from_u16(item.status).unwrap_or(StatusCode::BAD_GATEWAY);
            // 409 on `create`: the document is already there (an earlier delivery).
            if code.is_success() || code == StatusCode::CONFLICT {
                continue;
            }
            let reason = item.error.as_ref().map_or_else(
                || format!("HTTP {code}"),
                |e| format!("{}: {}", e.kind, e.reason),
            );
            if http::retryable(code) {
                again.get_or_insert(format!("{what}: item {code}: {reason}"));
            } else {
                refused.push((offset + i, format!("{what}: {reason}")));
            }
        }
        if let Some(message) = again {
            return Err(SinkError::Retry {
                message,
                after: None,
            });
        }
        done.rejected.extend(refused);
        Ok(())
    }
}

impl Sink for ElasticSink {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move {
            let auth = self.authorization()?;
            let pairs = self.pairs(batch);
            let sizes: Vec<usize> = pairs.iter().map(Vec::len).collect();
            let mut done = Delivered::default();
            for range in chunks(&sizes, self.max_request, 0) {
                self.bulk(auth.as_ref(), &pairs[range.clone()], range.start, &mut done)
                    .await?;
            }
            Ok(done)
        })
    }
}
