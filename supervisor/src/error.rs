//! `RuntimeError`: what a caller of the runtime (the HTTP edge, the CLI) gets back, shaped by how
//! to react.

use flywheel_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("not found")]
    NotFound,
    /// The caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Bad input; `field` names it.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The request conflicts with the current state (an approval already decided, a finished run).
    #[error("{message}")]
    Conflict { field: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The actor system is not running (shutting down).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
}
