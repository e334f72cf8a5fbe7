//! dockerd readiness: `GET /_ping` on its unix socket answers `200 OK` once the API serves.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The status code of an HTTP/1.x response head, if `head` holds a complete status line.
pub fn parse_status_code(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// One probe; false on any failure (not listening yet, no answer within a second, not 200).
pub async fn ping_docker(socket: &Path) -> bool {
    let probe = async {
        let mut stream = UnixStream::connect(socket).await.ok()?;
        stream
            .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 256];
        let mut filled = 0;
        while filled < head.len() {
            let n = stream.read(&mut head[filled..]).await.ok()?;
            if n == 0 {
                break;
            }
            filled += n;
            if let Some(code) = parse_status_code(&head[..filled]) {
                return Some(code);
            }
        }
        parse_status_code(&head[..filled])
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(200))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_code(b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\n"),
            Some(200)
        );
        assert_eq!(
            parse_status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_code(b"HTTP/1.1 200 OK"), None); // incomplete line
        assert_eq!(parse_status_code(b"SSH-2.0-x\r\n"), None);
    }

    #[tokio::test]
    async fn ping_against_a_fake_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("docker.sock");
        assert!(!ping_docker(&sock).await);
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut req = [0u8; 128];
            let _ = s.read(&mut req).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .await
                .expect("write");
        });
        assert!(ping_docker(&sock).await);
        server.await.expect("join");
    }
}
