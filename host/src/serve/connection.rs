//! How every HTTP connection is served, on the traffic and the admin port:
//! hyper's builder, configured in one place with what protects the host from
//! clients that misbehave.
//!
//! - A client must send a request's whole head within `--header-read-timeout`
//!   (a slowloris trickling headers a byte at a time, or a keep-alive
//!   connection left idle, is closed then), which needs a timer: HTTP/1
//!   connections get a coarse one ([`CoarseTimer`]), armed per request at
//!   little cost.
//! - hyper itself answers a head larger than its buffer, or with more than
//!   100 fields, with 431 and a request it cannot parse with 400, before any
//!   guest sees it.
//! - At most `--max-connections` traffic connections are open at once (a
//!   semaphore, as mini-redis limits its connections); one more is answered
//!   with a 503 ([`refuse`]) and closed, so memory stays bounded however many
//!   idle connections clients open.

use crate::serve::coarse_timer::CoarseTimer;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a connection over `--max-connections` is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 115\r\n\r\n{\"error\":\"the host has its maximum of connections open (--max-connections); retry later\",\"kind\":\"connection_limit\"}";

/// How long a refused connection may take to be told.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The connection builder every listener uses; `None`: no header-read
/// timeout (and no timer: hyper's default timeout needs one).
pub fn builder(header_read_timeout: Option<Duration>) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    match header_read_timeout {
        Some(timeout) => {
            builder.http1().timer(CoarseTimer::new(timeout)).header_read_timeout(timeout);
            builder.http2().timer(TokioTimer::new());
        }
        None => {
            builder.http1().header_read_timeout(None);
        }
    }
    builder
}

/// Tells a connection over the limit why it is refused, then closes it. The
/// client's request is read (and dropped) for a moment after the answer, so
/// that closing with it unread does not reset the connection before the
/// client has read the answer.
pub async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::REFUSAL;

    #[test]
    fn the_refusal_declares_its_body_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
