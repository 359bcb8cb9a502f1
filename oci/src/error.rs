use std::path::PathBuf;

/// Errors from reading or validating a bundle, a container id or a state file.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// JSON that does not parse, or does not match the schema; `field` is the JSON path.
    #[error("{file}: {field}: {message}")]
    Parse {
        file: PathBuf,
        field: String,
        message: String,
    },
    /// A config that parses but asks for something invalid or unsupported.
    #[error("config.json: {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("container id {id:?}: {message}")]
    BadId { id: String, message: String },
}

impl OciError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        OciError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
