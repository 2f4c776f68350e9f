//! A client for OpenAI-compatible `POST {base_url}/embeddings` services (OpenAI, Ollama, vLLM,
//! llama.cpp server, text-embeddings-inference): batching, a per-attempt timeout, and retries
//! with exponential backoff on 429, 408 and 5xx answers and on network failures.
//!
//! The request and response structs below are the third party's wire format, private to this
//! edge; nothing outside this file sees them.

use std::sync::Arc;
use std::time::Duration;

use flywheel_contracts::Secret;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Embedder, EmbeddingError, normalize};

/// How to reach an OpenAI-compatible embeddings service.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiEmbeddingsConfig {
    /// The API root including its version, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:11434/v1`; requests go to `{base_url}/embeddings`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set (local servers often need none).
    pub api_key: Option<Secret<String>>,
    pub model: String,
    /// The length of the model's vectors; any other length in an answer is an error.
    pub dimensions: usize,
    /// Also send `"dimensions"` in the request, for models that can shorten their vectors
    /// (OpenAI's text-embedding-3-*); many other servers reject the field.
    pub request_dimensions: bool,
    /// Limit for one HTTP attempt, connection included.
    pub timeout: Duration,
    /// Attempts after the first one, for retryable failures only.
    pub max_retries: u32,
    /// The first retry waits this long, each next one twice as long, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest wait between attempts; a `Retry-After` longer than this ends the retries.
    pub max_backoff: Duration,
    /// Texts per request.
    pub batch_size: usize,
}

impl OpenAiEmbeddingsConfig {
    /// A configuration with the usual limits: 30 s per attempt, 4 retries from 250 ms up to 8 s,
    /// 256 texts per request.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, dimensions: usize) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            dimensions,
            request_dimensions: false,
            timeout: Duration::from_secs(30),
            max_retries: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            batch_size: 256,
        }
    }
}

/// The OpenAI-compatible embeddings client. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct OpenAiEmbeddings {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: OpenAiEmbeddingsConfig,
    endpoint: reqwest::Url,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl OpenAiEmbeddings {
    pub fn new(config: OpenAiEmbeddingsConfig) -> Result<Self, EmbeddingError> {
        let invalid = |reason: String| EmbeddingError::Config(reason);
        let base = config.base_url.trim_end_matches('/');
        let endpoint = reqwest::Url::parse(&format!("{base}/embeddings"))
            .map_err(|e| invalid(format!("base_url {:?}: {e}", config.base_url)))?;
        if config.dimensions == 0 || config.batch_size == 0 {
            return Err(invalid("dimensions and batch_size must be positive".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { config, endpoint, http }) })
    }

    /// One batch, retried while the failure is retryable and attempts remain.
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let config = &self.inner.config;
        let mut attempt = 0;
        loop {
            let err = match self.attempt(texts).await {
                Ok(vectors) => return Ok(vectors),
                Err(err) => err,
            };
            let EmbeddingError::Unavailable { reason, retry_after } = &err else {
                return Err(err);
            };
            let backoff = config.initial_backoff.saturating_mul(2u32.saturating_pow(attempt)).min(config.max_backoff);
            let wait = retry_after.map_or(backoff, |r| r.max(backoff));
            if attempt >= config.max_retries || wait > config.max_backoff {
                return Err(err);
            }
            attempt += 1;
            tracing::warn!(
                endpoint = %self.inner.endpoint,
                attempt,
                wait_ms = wait.as_millis(),
                reason = %reason,
                "Embedding request failed, retrying."
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One HTTP exchange, its outcome classified.
    async fn attempt(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let Inner { config, endpoint, http } = &*self.inner;
        let body = EmbeddingsRequest {
            model: &config.model,
            input: texts,
            encoding_format: "float",
            dimensions: config.request_dimensions.then_some(config.dimensions),
        };
        let mut request = http.post(endpoint.clone()).json(&body);
        if let Some(key) = &config.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let bytes = response.bytes().await.map_err(unavailable)?;

        if status.is_success() {
            let parsed: EmbeddingsResponse = serde_json::from_slice(&bytes)
                .map_err(|e| EmbeddingError::BadResponse(format!("not an embeddings list: {e}")))?;
            return into_vectors(parsed, texts.len(), config.dimensions);
        }
        let message = serde_json::from_slice::<ErrorResponse>(&bytes)
            .map_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(500).collect(), |e| e.error.message);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                EmbeddingError::Unauthorized { status: status.as_u16() }
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                EmbeddingError::Unavailable { reason: format!("HTTP {status}: {message}"), retry_after }
            }
            s if s.is_server_error() => {
                EmbeddingError::Unavailable { reason: format!("HTTP {status}: {message}"), retry_after }
            }
            s => EmbeddingError::Rejected { status: s.as_u16(), message },
        })
    }
}

/// A transport failure (connect, timeout, reset) is worth retrying.
fn unavailable(e: reqwest::Error) -> EmbeddingError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    EmbeddingError::Unavailable { reason: format!("{kind}: {e}"), retry_after: None }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: the backoff applies then).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Puts the answer's vectors in input order, checks there is exactly one of the right length
/// per input, and normalises them.
fn into_vectors(
    response: EmbeddingsResponse,
    expected: usize,
    dimensions: usize,
) -> Result<Vec<Vec<f32>>, EmbeddingError> {
    let bad = EmbeddingError::BadResponse;
    if response.data.len() != expected {
        return Err(bad(format!("{} vectors for {expected} inputs", response.data.len())));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in response.data {
        if item.embedding.len() != dimensions {
            return Err(bad(format!("a vector of {} dimensions, {dimensions} configured", item.embedding.len())));
        }
        if !item.embedding.iter().all(|x| x.is_finite()) {
            return Err(bad("a vector with a non-finite component".into()));
        }
        let slot = out.get_mut(item.index).ok_or_else(|| bad(format!("index {} out of range", item.index)))?;
        if slot.replace(item.embedding).is_some() {
            return Err(bad(format!("index {} answered twice", item.index)));
        }
    }
    Ok(out
        .into_iter()
        .flatten()
        .map(|mut v| {
            normalize(&mut v);
            v
        })
        .collect())
}

impl Embedder for OpenAiEmbeddings {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.inner.config.batch_size) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }

    fn dimensions(&self) -> usize {
        self.inner.config.dimensions
    }

    fn model_id(&self) -> &str {
        &self.inner.config.model
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{Value, json};

    use super::*;

    const KEY: &str = "sk-test-key";
    const DIMS: usize = 4;

    /// What the fake server does with the next request; when the script is empty it answers
    /// correctly.
    enum Step {
        Status(u16, Value, Option<&'static str>),
        WrongDimensions,
        Slow(Duration),
    }

    #[derive(Default)]
    struct Fake {
        script: Mutex<VecDeque<Step>>,
        requests: Mutex<Vec<Value>>,
    }

    /// A deterministic, not normalised vector: the client must normalise it.
    fn fake_vector(text: &str) -> Vec<f32> {
        let len = text.len() as f32;
        let sum = text.bytes().map(f32::from).sum::<f32>();
        vec![len + 1.0, sum, 1.0, 2.0]
    }

    async fn handle(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
        fake.requests.lock().unwrap().push(body.clone());
        if headers.get("authorization") != Some(&HeaderValue::from_static("Bearer sk-test-key")) {
            let error = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}});
            return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
        }
        let step = fake.script.lock().unwrap().pop_front();
        let inputs: Vec<String> = serde_json::from_value(body["input"].clone()).unwrap();
        let dims = match step {
            Some(Step::Status(status, body, retry_after)) => {
                let mut response = (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
                if let Some(seconds) = retry_after {
                    response.headers_mut().insert("retry-after", HeaderValue::from_static(seconds));
                }
                return response;
            }
            Some(Step::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                DIMS
            }
            Some(Step::WrongDimensions) => DIMS + 1,
            None => DIMS,
        };
        // Answer in reverse order, as the wire format allows: `index` says which input.
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .rev()
            .map(|(index, text)| {
                let mut v = fake_vector(text);
                v.resize(dims, 0.5);
                json!({"object": "embedding", "index": index, "embedding": v})
            })
            .collect();
        Json(json!({
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }))
        .into_response()
    }

    async fn fake_server(script: Vec<Step>) -> (Arc<Fake>, OpenAiEmbeddingsConfig) {
        let fake = Arc::new(Fake { script: Mutex::new(script.into()), ..Fake::default() });
        let app = Router::new().route("/v1/embeddings", post(handle)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut config = OpenAiEmbeddingsConfig::new(format!("http://{addr}/v1/"), "fake-embed", DIMS);
        config.api_key = Some(Secret::new(KEY.to_owned()));
        config.initial_backoff = Duration::from_millis(5);
        config.max_backoff = Duration::from_millis(50);
        config.max_retries = 2;
        (fake, config)
    }

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn normalized(text: &str) -> Vec<f32> {
        let mut v = fake_vector(text);
        normalize(&mut v);
        v
    }

    fn request_count(fake: &Fake) -> usize {
        fake.requests.lock().unwrap().len()
    }

    #[tokio::test]
    async fn embeds_in_input_order_in_batches_with_the_key_and_model() {
        let (fake, mut config) = fake_server(vec![]).await;
        config.batch_size = 2;
        let client = OpenAiEmbeddings::new(config).unwrap();
        let items = texts(&["alpha", "be", "gamma ray", "d", "epsilon"]);

        let vectors = client.embed(&items).await.unwrap();

        let expected: Vec<Vec<f32>> = items.iter().map(|t| normalized(t)).collect();
        assert_eq!(vectors, expected);
        assert_eq!(client.dimensions(), DIMS);
        assert_eq!(client.model_id(), "fake-embed");
        let requests = fake.requests.lock().unwrap();
        assert_eq!(requests.len(), 3, "5 texts in batches of 2");
        assert_eq!(requests[0]["model"], "fake-embed");
        assert_eq!(requests[0]["input"], json!(["alpha", "be"]));
        assert_eq!(requests[2]["input"], json!(["epsilon"]));
        assert!(requests[0].get("dimensions").is_none());
    }

    #[tokio::test]
    async fn sends_dimensions_only_when_asked() {
        let (fake, mut config) = fake_server(vec![]).await;
        config.request_dimensions = true;
        OpenAiEmbeddings::new(config).unwrap().embed(&texts(&["x"])).await.unwrap();
        assert_eq!(fake.requests.lock().unwrap()[0]["dimensions"], DIMS);
    }

    #[tokio::test]
    async fn a_429_is_retried_after_backoff_then_succeeds() {
        let rate_limited = json!({"error": {"message": "Rate limit reached", "type": "requests"}});
        let (fake, config) = fake_server(vec![Step::Status(429, rate_limited, Some("0"))]).await;
        let client = OpenAiEmbeddings::new(config).unwrap();

        let vectors = client.embed(&texts(&["spring sale"])).await.unwrap();

        assert_eq!(vectors, vec![normalized("spring sale")]);
        assert_eq!(request_count(&fake), 2);
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_the_retries_run_out() {
        let oops = || Step::Status(503, json!({"error": {"message": "overloaded"}}), None);
        let (fake, config) = fake_server(vec![oops(), oops(), oops(), oops()]).await;
        let client = OpenAiEmbeddings::new(config).unwrap();

        let err = client.embed(&texts(&["x"])).await.unwrap_err();

        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("overloaded"), "{err}");
        assert_eq!(request_count(&fake), 3, "the first attempt and max_retries = 2 more");
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_backoff_limit_is_handed_to_the_caller() {
        let step = Step::Status(429, json!({"error": {"message": "slow down"}}), Some("60"));
        let (fake, config) = fake_server(vec![step]).await;
        let err = OpenAiEmbeddings::new(config).unwrap().embed(&texts(&["x"])).await.unwrap_err();
        assert!(matches!(
            err,
            EmbeddingError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(60)
        ));
        assert_eq!(request_count(&fake), 1);
    }

    #[tokio::test]
    async fn a_wrong_key_is_not_retried() {
        let (fake, mut config) = fake_server(vec![]).await;
        config.api_key = Some(Secret::new("sk-wrong".to_owned()));
        let err = OpenAiEmbeddings::new(config).unwrap().embed(&texts(&["x"])).await.unwrap_err();
        assert!(matches!(err, EmbeddingError::Unauthorized { status: 401 }), "{err}");
        assert!(!err.to_string().contains("sk-wrong"));
        assert_eq!(request_count(&fake), 1);
    }

    #[tokio::test]
    async fn a_rejected_request_carries_the_providers_message() {
        let step = Step::Status(400, json!({"error": {"message": "input too long"}}), None);
        let (fake, config) = fake_server(vec![step]).await;
        let err = OpenAiEmbeddings::new(config).unwrap().embed(&texts(&["x"])).await.unwrap_err();
        assert!(
            matches!(&err, EmbeddingError::Rejected { status: 400, message } if message == "input too long"),
            "{err}"
        );
        assert_eq!(request_count(&fake), 1);
    }

    #[tokio::test]
    async fn wrong_dimensions_and_malformed_answers_are_bad_responses() {
        let (_, config) = fake_server(vec![Step::WrongDimensions]).await;
        let err = OpenAiEmbeddings::new(config).unwrap().embed(&texts(&["x"])).await.unwrap_err();
        assert!(matches!(err, EmbeddingError::BadResponse(_)), "{err}");

        let (_, config) = fake_server(vec![Step::Status(200, json!({"data": "nope"}), None)]).await;
        let err = OpenAiEmbeddings::new(config).unwrap().embed(&texts(&["x"])).await.unwrap_err();
        assert!(matches!(err, EmbeddingError::BadResponse(_)), "{err}");
    }

    #[tokio::test]
    async fn a_slow_server_times_out_and_is_retried() {
        let (fake, mut config) = fake_server(vec![Step::Slow(Duration::from_secs(5))]).await;
        config.timeout = Duration::from_millis(200);
        let vectors = OpenAiEmbeddings::new(config).unwrap().embed(&texts(&["x"])).await.unwrap();
        assert_eq!(vectors, vec![normalized("x")]);
        assert_eq!(request_count(&fake), 2);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut config = OpenAiEmbeddingsConfig::new(format!("http://{addr}/v1"), "m", DIMS);
        config.max_retries = 1;
        config.initial_backoff = Duration::from_millis(1);
        let err = OpenAiEmbeddings::new(config).unwrap().embed(&texts(&["x"])).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn a_bad_base_url_is_a_configuration_error() {
        let err = OpenAiEmbeddings::new(OpenAiEmbeddingsConfig::new("not a url", "m", 3)).unwrap_err();
        assert!(matches!(err, EmbeddingError::Config(_)), "{err}");
    }

    #[test]
    fn the_key_never_prints() {
        let mut config = OpenAiEmbeddingsConfig::new("http://127.0.0.1:1/v1", "m", 3);
        config.api_key = Some(Secret::new(KEY.to_owned()));
        let client = OpenAiEmbeddings::new(config).unwrap();
        assert!(!format!("{client:?}").contains(KEY));
    }
}
