//! The raw TCP listener of session guests (`--tcp-listen`, default
//! `0.0.0.0:1337`): every accepted connection becomes a session, and every
//! read is handed to the guest as it arrived (protocol framing, such as the
//! broker's merged messages, is the guest's business).

use crate::serve::accept;
use crate::serve::session::{SessionHost, Transport};
use bytes::{Bytes, BytesMut};
use std::io;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Largest single read handed to the guest. Allocated only while reading, so
/// an idle connection costs no buffer.
const READ_SIZE: usize = 8 * 1024;

pub struct TcpTransport {
    stream: TcpStream,
}

impl Transport for TcpTransport {
    const KIND: &'static str = "tcp";

    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            self.stream.readable().await?;
            let mut buf = BytesMut::with_capacity(READ_SIZE);
            match self.stream.try_read_buf(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some(buf.freeze())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        self.stream.write_all(&data).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn close(mut self, _reason: &str) {
        let _ = self.stream.shutdown().await;
    }
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, host: Arc<SessionHost>) {
    loop {
        let (stream, peer) = accept::next(&listener, "tcp").await;
        let Some(slot) = host.admit() else {
            tracing::debug!(%peer, "tcp connection refused (session limit, or the guest does not handle sessions)");
            continue;
        };
        let _ = stream.set_nodelay(true);
        host.spawn(TcpTransport { stream }, peer, slot);
    }
}
