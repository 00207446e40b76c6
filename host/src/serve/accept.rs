//! Accepting connections on any of the host's listeners (traffic, admin,
//! raw TCP) the same way: a failed accept, typically EMFILE when the process
//! is out of file descriptors, is logged and retried after a pause instead
//! of spinning.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long to wait after a failed accept.
const BACKOFF: Duration = Duration::from_millis(50);

/// The next connection on `listener`; `role` names the listener in the log.
pub async fn next(listener: &TcpListener, role: &'static str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(role, error = %e, "accept failed");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}
