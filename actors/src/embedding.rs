//! Text embeddings behind one trait, [`Embedder`]: the local all-MiniLM-L6-v2 model run with
//! candle on the CPU ([`MiniLm`], the default) or an OpenAI-compatible `/v1/embeddings` service
//! ([`OpenAiEmbeddings`]). [`from_config`] builds the one an [`EmbeddingConfig`] names.
//!
//! Every implementation returns one L2-normalised vector per input text, in input order, of
//! exactly [`Embedder::dimensions`] components, so a dot product is a cosine similarity.

mod minilm;
mod openai;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use minilm::{DEFAULT_MODEL_DIR, MiniLm};
pub use openai::{OpenAiEmbeddings, OpenAiEmbeddingsConfig};

/// Turns texts into vectors. Implementations are cheap to clone and share (`Arc` inside).
pub trait Embedder: Send + Sync {
    /// One unit-length vector per text, in the order of `texts`. An empty slice gives an empty
    /// result without any work.
    fn embed(&self, texts: &[String]) -> impl Future<Output = Result<Vec<Vec<f32>>, EmbeddingError>> + Send;

    /// The length of every vector `embed` returns.
    fn dimensions(&self) -> usize;

    /// Which model made the vectors (vectors of different models must not be compared).
    fn model_id(&self) -> &str;
}

/// Why texts could not be embedded, shaped by how to react.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// The local model is not installed. Operator's job: run `scripts/fetch-model`. Retrying
    /// does not help.
    #[error(
        "embedding model not found in {}: {missing} is missing; run scripts/fetch-model \
         (it installs into $FLYWHEEL_MODEL_DIR, default {DEFAULT_MODEL_DIR})",
        dir.display()
    )]
    ModelMissing { dir: PathBuf, missing: String },

    /// The model files are there but unusable (corrupt, another architecture). Operator's job:
    /// run `scripts/fetch-model` again. Retrying does not help.
    #[error(
        "embedding model in {} is unusable: {reason}; run scripts/fetch-model again",
        dir.display()
    )]
    ModelInvalid { dir: PathBuf, reason: String },

    /// The configuration cannot work (an unparsable base URL, zero dimensions). Operator's job:
    /// fix the configuration.
    #[error("embedding configuration is invalid: {0}")]
    Config(String),

    /// The provider refused the credentials (HTTP 401/403). Operator's job: fix the key.
    #[error("embedding provider refused the credentials (HTTP {status})")]
    Unauthorized { status: u16 },

    /// The provider refused this request (another 4xx: input too long, unknown model).
    /// Retrying the same request fails the same way.
    #[error("embedding provider rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },

    /// The provider is rate limiting, overloaded, slow or unreachable, and the retries ran out.
    /// Transient: retry later (after `retry_after` when the provider said so).
    #[error("embedding provider unavailable: {reason}")]
    Unavailable { reason: String, retry_after: Option<Duration> },

    /// The provider answered something that is not a valid embeddings response (bad JSON, wrong
    /// number of vectors, wrong dimensions — often a model/dimensions misconfiguration).
    /// Retrying does not help.
    #[error("embedding provider answered an invalid response: {0}")]
    BadResponse(String),

    /// Local inference failed. A bug on our side; retrying does not help.
    #[error("embedding inference failed: {0}")]
    Inference(String),
}

impl EmbeddingError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Which embedder a node uses. The default is the local model in [`DEFAULT_MODEL_DIR`].
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingConfig {
    /// all-MiniLM-L6-v2 on the CPU, from the directory `scripts/fetch-model` fills.
    MiniLm { model_dir: PathBuf },
    /// An OpenAI-compatible embeddings service.
    OpenAi(OpenAiEmbeddingsConfig),
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self::MiniLm { model_dir: PathBuf::from(DEFAULT_MODEL_DIR) }
    }
}

/// The embedder an [`EmbeddingConfig`] names. An enum rather than a trait object because
/// [`Embedder::embed`] returns `impl Future`.
#[derive(Debug, Clone)]
pub enum Embeddings {
    MiniLm(MiniLm),
    OpenAi(OpenAiEmbeddings),
}

/// Builds the configured embedder. Loading the local model reads ~90 MB and runs on a blocking
/// thread, so this never stalls the async runtime. The vectors must fit the vector store
/// ([`flywheel_storage::vector::DIMENSIONS`]): any other length is refused here, at start-up,
/// rather than at the first write.
pub async fn from_config(config: &EmbeddingConfig) -> Result<Embeddings, EmbeddingError> {
    let embeddings = match config {
        EmbeddingConfig::MiniLm { model_dir } => Embeddings::MiniLm(MiniLm::load_async(model_dir.clone()).await?),
        EmbeddingConfig::OpenAi(config) => Embeddings::OpenAi(OpenAiEmbeddings::new(config.clone())?),
    };
    let store = flywheel_storage::vector::DIMENSIONS;
    if embeddings.dimensions() != store {
        return Err(EmbeddingError::Config(format!(
            "{} makes {}-dimensional vectors; the vector store holds {store}",
            embeddings.model_id(),
            embeddings.dimensions()
        )));
    }
    Ok(embeddings)
}

impl Embedder for Embeddings {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        match self {
            Self::MiniLm(e) => e.embed(texts).await,
            Self::OpenAi(e) => e.embed(texts).await,
        }
    }

    fn dimensions(&self) -> usize {
        match self {
            Self::MiniLm(e) => e.dimensions(),
            Self::OpenAi(e) => e.dimensions(),
        }
    }

    fn model_id(&self) -> &str {
        match self {
            Self::MiniLm(e) => e.model_id(),
            Self::OpenAi(e) => e.model_id(),
        }
    }
}

/// Scales `v` to unit length in place; a zero vector stays zero.
fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two vectors of the same length (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        let unavailable = EmbeddingError::Unavailable { reason: "429".into(), retry_after: None };
        assert!(unavailable.is_retryable());
        assert!(!EmbeddingError::Unauthorized { status: 401 }.is_retryable());
        assert!(!EmbeddingError::BadResponse("x".into()).is_retryable());
    }

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[tokio::test]
    async fn from_config_refuses_vectors_the_store_cannot_hold() {
        let config = OpenAiEmbeddingsConfig::new("http://127.0.0.1:1/v1", "text-embedding-3-small", 1536);
        let err = from_config(&EmbeddingConfig::OpenAi(config)).await.unwrap_err();
        assert!(matches!(err, EmbeddingError::Config(_)), "{err}");

        let config = OpenAiEmbeddingsConfig::new("http://127.0.0.1:1/v1", "text-embedding-3-small", 384);
        let embeddings = from_config(&EmbeddingConfig::OpenAi(config)).await.unwrap();
        assert_eq!(embeddings.dimensions(), 384);
    }

    #[tokio::test]
    async fn from_config_names_the_missing_model_directory() {
        let model_dir = std::env::temp_dir().join("flywheel-no-model-here");
        let err = from_config(&EmbeddingConfig::MiniLm { model_dir: model_dir.clone() }).await.unwrap_err();
        assert!(err.to_string().contains(&model_dir.display().to_string()), "{err}");
        assert!(err.to_string().contains("scripts/fetch-model"), "{err}");
    }

    #[test]
    fn default_config_is_the_local_model() {
        assert_eq!(EmbeddingConfig::default(), EmbeddingConfig::MiniLm { model_dir: PathBuf::from(DEFAULT_MODEL_DIR) });
    }
}
