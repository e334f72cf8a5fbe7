//! The one-line error message the CLIs print: the error and its causes joined by ": ", as
//! anyhow's `{:#}` does, but without saying a cause twice. Many library errors already quote
//! their source in their own message (`stream for X failed: connection closed by peer`) and
//! also expose it as `source()`, which `{:#}` would print again.

pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !part.is_empty() && !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("stream for out.tar failed: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::other("connection closed by peer");
        let err = anyhow::Error::new(Quoting { source: io }).context("exporting the storage");
        assert_eq!(format!("{err:#}").matches("closed by peer").count(), 2);
        assert_eq!(
            error_text(&err),
            "exporting the storage: stream for out.tar failed: connection closed by peer"
        );
    }

    #[test]
    fn every_distinct_cause_is_kept() {
        let err = anyhow::anyhow!("disk full")
            .context("writing out.tar")
            .context("exporting");
        assert_eq!(error_text(&err), "exporting: writing out.tar: disk full");
    }
}
