//! A client for any server speaking OpenAI's chat-completions API (`POST {base}/chat/completions`):
//! OpenAI itself, Ollama, vLLM, llama.cpp server, LiteLLM, …
//!
//! It sends the messages [`prompt`](super::prompt) builds, never a `tools` or `functions` list,
//! asks for a JSON object (`response_format`, switchable off for servers without it), and reads
//! `choices[0].message.content` as JSON, tolerating a fenced ```` ```json ```` block around it.
//! Transport errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and jitter,
//! honouring `Retry-After`; other failures say whose fault they are.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flywheel_contracts::Secret;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tracing::warn;

use super::prompt::{self, ChatMessage};
use super::{LanguageModel, ModelError, ModelRequest, ModelResponse, Task, Usage, estimate_tokens};

/// How to reach an OpenAI-compatible server. The binary fills it from the environment; the
/// defaults talk to a local Ollama.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The API's base URL, up to and including the version segment (`FLYWHEEL_LLM_BASE_URL`;
    /// default `http://127.0.0.1:11434/v1`, Ollama). `https://api.openai.com/v1` for OpenAI,
    /// `http://host:8000/v1` for vLLM, `http://host:8080/v1` for llama.cpp server.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set (`FLYWHEEL_LLM_API_KEY`; local servers need
    /// none). Never logged.
    pub api_key: Option<Secret<String>>,
    /// The model to ask for (`FLYWHEEL_LLM_MODEL`; default `llama3.1`).
    pub model: String,
    /// Upper bound on one HTTP attempt, answer included (`FLYWHEEL_LLM_TIMEOUT_SECS`; default
    /// 120 s). Generation is slow on small machines; a timed-out attempt is retried.
    pub timeout: Duration,
    /// Upper bound on establishing a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Attempts after the first one on a transport error, timeout, 408, 429 or 5xx
    /// (`FLYWHEEL_LLM_MAX_RETRIES`; default 3).
    pub max_retries: u32,
    /// The first backoff; each retry doubles it, up to `max_backoff`, and adds jitter (half the
    /// delay is random) so that many callers do not retry in step (default 500 ms).
    pub initial_backoff: Duration,
    /// The longest backoff between two attempts (default 20 s).
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for within a call (default 60 s). A server asking for
    /// longer gets [`ModelError::RateLimited`] back at once, so the run can be rescheduled
    /// instead of holding a worker.
    pub max_retry_after: Duration,
    /// Sends `response_format: {"type": "json_object"}` (`FLYWHEEL_LLM_JSON_MODE`; default
    /// true). Turn it off for servers that reject the parameter; the prompt asks for JSON anyway
    /// and answers are validated either way.
    pub json_mode: bool,
    /// Sampling temperature (default 0.2: faithful to the inputs, a little varied); `None` sends
    /// none and takes the server's default.
    pub temperature: Option<f32>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:11434/v1".to_owned(),
            api_key: None,
            model: "llama3.1".to_owned(),
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
            json_mode: true,
            temperature: Some(0.2),
        }
    }
}

/// The chat-completions client.
#[derive(Debug)]
pub struct OpenAiCompatible {
    http: reqwest::Client,
    endpoint: Url,
    config: OpenAiConfig,
}

/// Characters of a provider's error message kept in an error.
const MAX_ERROR_MESSAGE: usize = 300;

impl OpenAiCompatible {
    /// Builds the client; fails on a base URL that is not http(s).
    pub fn new(config: OpenAiConfig) -> Result<Self, ModelError> {
        let endpoint = format!("{}/chat/completions", config.base_url.trim().trim_end_matches('/'));
        let endpoint = Url::parse(&endpoint).map_err(|e| {
            ModelError::Misconfigured(format!("the model base URL {:?} is not a URL: {e}", config.base_url))
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(ModelError::Misconfigured(format!(
                "the model base URL {:?} must be http or https",
                config.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("flywheel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ModelError::Misconfigured(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, endpoint, config })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The request body: the messages, the output cap, JSON mode. Never tools.
    fn body(&self, request: &ModelRequest, messages: &[ChatMessage]) -> Value {
        let messages: Vec<Value> =
            messages.iter().map(|m| json!({"role": m.role.as_str(), "content": m.content})).collect();
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "max_tokens": request.max_output_tokens,
            "stream": false,
        });
        if let Some(t) = self.config.temperature {
            body["temperature"] = json!(t);
        }
        if self.config.json_mode {
            body["response_format"] = json!({"type": "json_object"});
        }
        body
    }

    /// One HTTP attempt: `Ok` with the answer, `Err((error, retry_in))` with whether and when to
    /// try again.
    async fn attempt(
        &self,
        request: &ModelRequest,
        messages: &[ChatMessage],
        body: &Value,
        attempt: u32,
    ) -> Result<ModelResponse, (ModelError, Option<Duration>)> {
        let mut http = self.http.post(self.endpoint.clone()).json(body);
        if let Some(key) = &self.config.api_key {
            http = http.bearer_auth(key.expose());
        }
        let backoff = backoff(&self.config, attempt, rand::random::<f64>());
        let response = match http.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() { "timed out" } else { "failed" };
                let error = ModelError::Unavailable { message: format!("request to {} {what}: {e}", self.host()) };
                return Err((error, Some(backoff)));
            }
        };
        let status = response.status();
        let retry_after = parse_retry_after(response.headers(), Utc::now());
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                let message = format!("reading the answer from {} failed: {e}", self.host());
                return Err((ModelError::Unavailable { message }, Some(backoff)));
            }
        };
        if status.is_success() {
            return parse_completion(request.task, &text, messages, &self.config.model).map_err(|e| (e, None));
        }
        let message = error_message(&text);
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                let error = ModelError::RateLimited { retry_after };
                match retry_after {
                    Some(wait) if wait > self.config.max_retry_after => Err((error, None)),
                    Some(wait) => Err((error, Some(wait))),
                    None => Err((error, Some(backoff))),
                }
            }
            StatusCode::REQUEST_TIMEOUT => Err((
                ModelError::Unavailable { message: format!("{} answered 408: {message}", self.host()) },
                Some(retry_after.unwrap_or(backoff).min(self.config.max_retry_after)),
            )),
            s if s.is_server_error() => Err((
                ModelError::Unavailable { message: format!("{} answered {}: {message}", self.host(), s.as_u16()) },
                Some(retry_after.unwrap_or(backoff).min(self.config.max_retry_after)),
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err((
                ModelError::Misconfigured(format!(
                    "{} refused the API key ({}): {message}",
                    self.host(),
                    status.as_u16()
                )),
                None,
            )),
            StatusCode::NOT_FOUND => Err((
                ModelError::Misconfigured(format!(
                    "{} has no chat-completions endpoint or no model {:?} (404): {message}",
                    self.endpoint, self.config.model
                )),
                None,
            )),
            s => Err((ModelError::Rejected { status: s.as_u16(), message }, None)),
        }
    }

    /// Host and port, for messages (never the key).
    fn host(&self) -> String {
        match (self.endpoint.host_str(), self.endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => self.endpoint.to_string(),
        }
    }
}

impl LanguageModel for OpenAiCompatible {
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let messages = prompt::messages(request);
        let body = self.body(request, &messages);
        let mut attempt = 0;
        loop {
            match self.attempt(request, &messages, &body, attempt).await {
                Ok(response) => return Ok(response),
                Err((error, Some(wait))) if attempt < self.config.max_retries => {
                    warn!(
                        tenant_id = %request.tenant,
                        task = %request.task,
                        attempt = attempt + 1,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %error,
                        "Model request failed; retrying."
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    fn provider(&self) -> &'static str {
        "openai_compatible"
    }

    fn model_name(&self) -> &str {
        &self.config.model
    }
}

/// The delay before retry number `attempt + 1`: `initial × 2^attempt`, capped at `max_backoff`,
/// of which the upper half is scaled by `jitter` (in `[0, 1)`).
pub fn backoff(config: &OpenAiConfig, attempt: u32, jitter: f64) -> Duration {
    let base = config.initial_backoff.saturating_mul(2u32.saturating_pow(attempt.min(20))).min(config.max_backoff);
    let half = base / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// `Retry-After` as a delay: whole seconds or an HTTP date (a date in the past is zero).
pub fn parse_retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The provider's own error message (`{"error": {"message": …}}`), else the body, clipped.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("error")).or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .unwrap_or(body)
        .trim();
    let message = if message.is_empty() { "no details" } else { message };
    clip(message, MAX_ERROR_MESSAGE)
}

fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Reads a chat completion: the answer's JSON, its usage (estimated when the server reports
/// none) and the model that answered.
pub fn parse_completion(
    task: Task,
    body: &str,
    messages: &[ChatMessage],
    configured_model: &str,
) -> Result<ModelResponse, ModelError> {
    let completion: Value = serde_json::from_str(body).map_err(|e| ModelError::Unavailable {
        message: format!("the provider answered 200 with something that is not a chat completion: {e}"),
    })?;
    let choice = completion.pointer("/choices/0").ok_or_else(|| ModelError::Unavailable {
        message: "the provider answered 200 with a chat completion without choices".to_owned(),
    })?;
    let content = choice.pointer("/message/content").and_then(Value::as_str).unwrap_or_default();
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str).unwrap_or_default();
    let reported = |name: &str| completion.pointer(&format!("/usage/{name}")).and_then(Value::as_u64);
    let usage = Usage {
        prompt_tokens: reported("prompt_tokens").unwrap_or_else(|| prompt::estimate_prompt_tokens(messages)),
        completion_tokens: reported("completion_tokens").unwrap_or_else(|| estimate_tokens(content)),
    };
    let model = completion.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(configured_model);
    if content.trim().is_empty() {
        let refusal = choice.pointer("/message/refusal").and_then(Value::as_str).unwrap_or_default();
        let error = if refusal.is_empty() {
            format!("the answer was empty (finish_reason {finish_reason:?})")
        } else {
            format!("the model declined: {}", clip(refusal, MAX_ERROR_MESSAGE))
        };
        return Err(ModelError::Unparseable { task, raw: String::new(), error, usage });
    }
    match extract_json(content) {
        Ok(output) => Ok(ModelResponse { output, usage, model: model.to_owned() }),
        Err(e) => {
            let error = if finish_reason == "length" {
                format!("the answer was cut off at the output limit ({e}); answer more briefly")
            } else {
                e
            };
            Err(ModelError::Unparseable { task, raw: content.to_owned(), error, usage })
        }
    }
}

/// The JSON in a model's answer: the whole text, else the inside of its first fenced code block,
/// else the span from the first `{` to the last `}`.
pub fn extract_json(content: &str) -> Result<Value, String> {
    let text = content.trim();
    let first_error = match serde_json::from_str::<Value>(text) {
        Ok(v) => return Ok(v),
        Err(e) => e.to_string(),
    };
    if let Some(start) = text.find("```") {
        let after = &text[start + 3..];
        // Skip the info string (`json`) up to the end of the fence line.
        let inner_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let inner = &after[inner_start..];
        let inner = inner.find("```").map_or(inner, |end| &inner[..end]);
        if let Ok(v) = serde_json::from_str::<Value>(inner.trim()) {
            return Ok(v);
        }
    }
    if let (Some(open), Some(close)) = (text.find('{'), text.rfind('}'))
        && open < close
        && let Ok(v) = serde_json::from_str::<Value>(&text[open..=close])
    {
        return Ok(v);
    }
    Err(first_error)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn json_is_found_bare_fenced_or_wrapped_in_prose() {
        assert_eq!(extract_json(" {\"a\": 1} ").unwrap(), json!({"a": 1}));
        assert_eq!(extract_json("```json\n{\"a\": 1}\n```").unwrap(), json!({"a": 1}));
        assert_eq!(extract_json("Here you go:\n```\n{\"a\": [1]}\n```\nDone.").unwrap(), json!({"a": [1]}));
        assert_eq!(extract_json("Sure! {\"a\": {\"b\": 2}} Hope that helps").unwrap(), json!({"a": {"b": 2}}));
        assert!(extract_json("I cannot do that.").is_err());
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let c = OpenAiConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..OpenAiConfig::default()
        };
        assert_eq!(backoff(&c, 0, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(&c, 0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(&c, 2, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(&c, 10, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff(&c, u32::MAX, 0.5), Duration::from_millis(750));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().with_timezone(&Utc);
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 25 Nov 2026 10:00:30 GMT"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 25 Nov 2026 09:00:00 GMT"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h, now), None);
    }

    #[test]
    fn completions_are_read_with_usage_or_estimates() {
        let task = Task::new("test.answer");
        let body = json!({
            "model": "llama3.1:8b",
            "choices": [{"message": {"role": "assistant", "content": "```json\n{\"ok\": true}\n```"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3}
        });
        let r = parse_completion(task, &body.to_string(), &[], "x").unwrap();
        assert_eq!(r.output, json!({"ok": true}));
        assert_eq!(r.usage, Usage { prompt_tokens: 12, completion_tokens: 3 });
        assert_eq!(r.model, "llama3.1:8b");

        let body = json!({"choices": [{"message": {"content": "{\"ok\": tru"}, "finish_reason": "length"}]});
        match parse_completion(task, &body.to_string(), &[], "x") {
            Err(ModelError::Unparseable { error, usage, raw, .. }) => {
                assert!(error.contains("cut off"), "{error}");
                assert!(usage.completion_tokens > 0);
                assert_eq!(raw, "{\"ok\": tru");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_completion(task, "<html>", &[], "x"), Err(ModelError::Unavailable { .. })));
    }

    #[test]
    fn error_messages_come_from_the_provider_and_are_clipped() {
        assert_eq!(error_message(r#"{"error": {"message": "model not found"}}"#), "model not found");
        assert_eq!(error_message(r#"{"error": "overloaded"}"#), "overloaded");
        assert_eq!(error_message(""), "no details");
        assert!(error_message(&"x".repeat(1000)).chars().count() <= MAX_ERROR_MESSAGE + 1);
    }

    #[test]
    fn a_base_url_must_be_http() {
        let bad = OpenAiConfig { base_url: "ftp://example.com/v1".into(), ..OpenAiConfig::default() };
        assert!(matches!(OpenAiCompatible::new(bad), Err(ModelError::Misconfigured(_))));
        let ok = OpenAiCompatible::new(OpenAiConfig::default()).unwrap();
        assert_eq!(ok.endpoint.as_str(), "http://127.0.0.1:11434/v1/chat/completions");
    }
}
