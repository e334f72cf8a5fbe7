//! How the bundling library fails: input it refuses (a bad spec, a missing or conflicting file,
//! an unusable directory), or a step that failed below it (I/O, the guest, the engine), named by
//! its context. The message of a failed step is the step; its cause stays the error's `source()`,
//! so the CLI's one-line error reads "step: cause" as before.

use std::error::Error as StdError;

/// A bundling failure.
#[derive(Debug, thiserror::Error)]
pub enum BundlingError {
    /// The caller's input cannot be used; the message says why and what to do.
    #[error("{0}")]
    Invalid(String),
    /// A step failed; `context` names the step, `source` says why.
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
    /// A failure from a lower layer, passed on as it is.
    #[error(transparent)]
    Other(Box<dyn StdError + Send + Sync + 'static>),
}

pub type Result<T, E = BundlingError> = std::result::Result<T, E>;

/// Refuses the caller's input: `return Err(BundlingError::Invalid(format!(...)))`.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::bundling::BundlingError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use refuse;

/// Names the step a result belongs to (anyhow's `context`, typed).
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: StdError + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| BundlingError::Failed {
            context: context.into(),
            source: Box::new(e),
        })
    }

    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| BundlingError::Failed {
            context: f().into(),
            source: Box::new(e),
        })
    }
}

/// A missing value is refused input, with the context as the message.
impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| BundlingError::Invalid(context.into()))
    }

    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| BundlingError::Invalid(f().into()))
    }
}

macro_rules! pass_on {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for BundlingError {
            fn from(e: $t) -> Self {
                BundlingError::Other(Box::new(e))
            }
        })*
    };
}

pass_on!(
    std::io::Error,
    crate::guest::boot_image::ImageError,
    crate::guest::instance::InstanceError,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_keeps_its_cause_as_source() {
        let r: std::result::Result<(), _> = Err(std::io::Error::other("disk full"));
        let e = r.context("writing out.tar").expect_err("failed");
        assert_eq!(e.to_string(), "writing out.tar");
        assert_eq!(e.source().expect("source").to_string(), "disk full");
        let none: Option<u8> = None;
        assert_eq!(
            none.context("no entry").expect_err("none").to_string(),
            "no entry"
        );
    }
}
