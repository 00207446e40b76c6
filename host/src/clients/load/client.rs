//! Sends one request and classifies what went wrong, over a keep-alive
//! connection pool (HTTP/1.1, or HTTP/2 with prior knowledge for `--http2`).

use super::plan::Template;
use super::stats::ErrorKind;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client as PoolClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::error::Error as StdError;
use std::time::Duration;

#[derive(Clone)]
pub struct Client {
    pool: PoolClient<HttpConnector, Full<Bytes>>,
    /// A request (including reading its whole body) that takes longer fails as `timeout`.
    timeout: Duration,
}

impl Client {
    pub fn new(http2: bool, timeout: Duration) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let pool = PoolClient::builder(TokioExecutor::new())
            .http2_only(http2)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Client { pool, timeout }
    }

    /// Sends `template` and reads the whole response; the status, or why not.
    pub async fn send(&self, template: &Template) -> Result<u16, ErrorKind> {
        let mut request = Request::new(Full::new(template.body()));
        *request.method_mut() = template.method.clone();
        *request.uri_mut() = template.uri.clone();
        *request.headers_mut() = template.headers.clone();
        let exchange = async {
            let response = self.pool.request(request).await.map_err(|e| classify_client(&e))?;
            let status = response.status().as_u16();
            response.into_body().collect().await.map_err(|e| classify(&e))?;
            Ok(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ErrorKind::Timeout),
        }
    }
}

fn classify_client(error: &hyper_util::client::legacy::Error) -> ErrorKind {
    if error.is_connect() {
        return ErrorKind::Connect;
    }
    classify(error)
}

/// Walks an error's sources for the I/O or hyper condition behind it.
fn classify(error: &(dyn StdError + 'static)) -> ErrorKind {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            return match io.kind() {
                Io::ConnectionRefused | Io::AddrNotAvailable | Io::NotConnected => ErrorKind::Connect,
                Io::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Reset,
            };
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return ErrorKind::Reset;
            }
            if h.is_timeout() {
                return ErrorKind::Timeout;
            }
        }
        source = e.source();
    }
    ErrorKind::Other
}
