//! Structured output: every answer is checked against the request's JSON Schema (draft 2020-12).
//! A bad answer (not JSON, or JSON that breaks the schema) is shown back to the model with what
//! was wrong, and the model is asked again, up to `max_retries` times; then the call fails with
//! [`ModelError::InvalidOutput`] naming the task and the last error.

use std::fmt::Write as _;

use tracing::warn;

use super::{Correction, LanguageModel, ModelError, ModelRequest, ModelResponse, Usage};

/// How hard to try for a valid answer.
#[derive(Debug, Clone, Copy)]
pub struct StructuredConfig {
    /// Extra attempts after the first bad answer (`FLYWHEEL_LLM_SCHEMA_RETRIES`; default 2).
    pub max_retries: u32,
}

impl Default for StructuredConfig {
    fn default() -> Self {
        Self { max_retries: 2 }
    }
}

/// Validates `M`'s answers and asks again on a bad one.
#[derive(Debug)]
pub struct Structured<M> {
    inner: M,
    config: StructuredConfig,
}

impl<M> Structured<M> {
    pub fn new(inner: M, config: StructuredConfig) -> Self {
        Self { inner, config }
    }

    pub fn inner(&self) -> &M {
        &self.inner
    }
}

/// Violations listed in one error message, at most.
const MAX_LISTED: usize = 6;
/// Characters of one violation's message, at most.
const MAX_MESSAGE: usize = 300;

/// Why `output` does not match `schema`, or `None` when it does.
pub fn violations(validator: &jsonschema::Validator, output: &serde_json::Value) -> Option<String> {
    let mut out = String::new();
    let mut count = 0usize;
    for e in validator.iter_errors(output) {
        count += 1;
        if count > MAX_LISTED {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        let path = e.instance_path().to_string();
        let at = if path.is_empty() { "the top level".to_owned() } else { path };
        let mut message = e.to_string();
        if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE) {
            message.truncate(cut);
            message.push('…');
        }
        let _ = write!(out, "at {at}: {message}");
    }
    if count > MAX_LISTED {
        let _ = write!(out, "; and {} more", count - MAX_LISTED);
    }
    (count > 0).then_some(out)
}

/// Compiles a request's output schema; a schema that does not compile is a programming error in
/// the task's definition.
pub fn compile(request: &ModelRequest) -> Result<jsonschema::Validator, ModelError> {
    jsonschema::draft202012::new(&request.output_schema).map_err(|e| {
        ModelError::Misconfigured(format!("the output schema of {} is not a valid JSON Schema: {e}", request.task))
    })
}

impl<M: LanguageModel> LanguageModel for Structured<M> {
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let validator = compile(request)?;
        let mut attempt_request = request.clone();
        let mut spent = Usage::default();
        let mut last_error = String::new();
        for attempt in 0..=self.config.max_retries {
            let (answer, error) = match self.inner.complete(&attempt_request).await {
                Ok(response) => {
                    spent += response.usage;
                    match violations(&validator, &response.output) {
                        None => return Ok(ModelResponse { usage: spent, ..response }),
                        Some(error) => (response.output.to_string(), error),
                    }
                }
                Err(ModelError::Unparseable { raw, error, usage, .. }) => {
                    spent += usage;
                    (raw, format!("it is not one valid JSON object ({error})"))
                }
                Err(other) => return Err(other),
            };
            warn!(
                tenant_id = %request.tenant,
                task = %request.task,
                attempt = attempt + 1,
                error = %error,
                "Model answer rejected."
            );
            attempt_request.corrections.push(Correction { answer, error: error.clone() });
            last_error = error;
        }
        Err(ModelError::InvalidOutput { task: request.task, error: last_error })
    }

    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn model_name(&self) -> &str {
        self.inner.model_name()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use flywheel_contracts::TenantId;
    use serde_json::{Value, json};

    use super::*;
    use crate::model::Task;

    /// Answers from a script, one per call, and remembers the requests.
    struct Scripted {
        answers: Mutex<Vec<Result<Value, String>>>,
        seen: Mutex<Vec<ModelRequest>>,
    }

    impl LanguageModel for Scripted {
        async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
            self.seen.lock().unwrap().push(request.clone());
            let next = self.answers.lock().unwrap().remove(0);
            let usage = Usage { prompt_tokens: 10, completion_tokens: 5 };
            match next {
                Ok(output) => Ok(ModelResponse { output, usage, model: "scripted".into() }),
                Err(raw) => Err(ModelError::Unparseable { task: request.task, raw, error: "bad".into(), usage }),
            }
        }
        fn provider(&self) -> &'static str {
            "scripted"
        }
        fn model_name(&self) -> &str {
            "scripted"
        }
    }

    fn model(answers: Vec<Result<Value, String>>) -> Structured<Scripted> {
        Structured::new(
            Scripted { answers: Mutex::new(answers), seen: Mutex::new(Vec::new()) },
            StructuredConfig::default(),
        )
    }

    fn request() -> ModelRequest {
        ModelRequest::new(
            TenantId::new(),
            Task::new("test.answer"),
            "Answer.",
            json!({}),
            json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}),
        )
    }

    #[tokio::test]
    async fn a_bad_answer_is_retried_with_its_error_and_usage_adds_up() {
        let m = model(vec![Err("Sure! Here it is".into()), Ok(json!({"n": "one"})), Ok(json!({"n": 1}))]);
        let response = m.complete(&request()).await.unwrap();
        assert_eq!(response.output, json!({"n": 1}));
        assert_eq!(response.usage, Usage { prompt_tokens: 30, completion_tokens: 15 });
        let seen = m.inner().seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].corrections.len(), 1);
        assert_eq!(seen[1].corrections[0].answer, "Sure! Here it is");
        assert!(seen[2].corrections[1].error.contains("/n"), "{:?}", seen[2].corrections);
    }

    #[tokio::test]
    async fn after_the_retries_the_call_fails_naming_task_and_error() {
        let m = model(vec![Ok(json!({})), Ok(json!({})), Ok(json!({}))]);
        let err = m.complete(&request()).await.unwrap_err();
        match &err {
            ModelError::InvalidOutput { task, error } => {
                assert_eq!(task.as_str(), "test.answer");
                assert!(error.contains("\"n\" is a required property"), "{error}");
            }
            other => panic!("expected InvalidOutput, got {other:?}"),
        }
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn a_schema_that_does_not_compile_is_misconfiguration() {
        let m = model(vec![]);
        let mut r = request();
        r.output_schema = json!({"type": 12});
        assert!(matches!(m.complete(&r).await, Err(ModelError::Misconfigured(_))));
    }
}
