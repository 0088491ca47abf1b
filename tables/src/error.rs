//! Why a file was not applied: refused for ever (the writer's DLQ), or a failure worth trying again.

use crate::rows::Refused;
use deltalake::DeltaTableError;

/// Why a file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file cannot go into its table, ever (its DLQ, with the reason).
    #[error("{0}")]
    Refused(#[from] Refused),
    /// The table's storage or a commit failed; trying again may succeed.
    #[error("delta: {0}")]
    Table(#[from] DeltaTableError),
}

impl ApplyError {
    /// A failure of the table's storage or of reading a file, worth trying again.
    pub fn table(detail: impl std::fmt::Display) -> Self {
        Self::Table(DeltaTableError::Generic(detail.to_string()))
    }
}

impl From<deltalake::arrow::error::ArrowError> for ApplyError {
    fn from(e: deltalake::arrow::error::ArrowError) -> Self {
        Self::Refused(Refused(e.to_string()))
    }
}
