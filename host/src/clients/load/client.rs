//! Sends one request and classifies what went wrong: over a keep-alive
//! connection pool (HTTP/1.1, or HTTP/2 with prior knowledge for `--http2`),
//! or over a closed-model worker's own HTTP/1.1 [`Connection`].

use super::plan::Template;
use super::stats::ErrorKind;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client as PoolClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::error::Error as StdError;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpStream;

#[derive(Clone)]
pub struct Client {
    pool: PoolClient<HttpConnector, Full<Bytes>>,
    /// A request (including reading its whole body) that takes longer fails as `timeout`.
    timeout: Duration,
    /// HTTP/2 with prior knowledge: no worker gets a [`Connection`] of its own.
    http2: bool,
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
        Client { pool, timeout, http2 }
    }

    /// A closed-model worker's own connection, for a run sending to `uris`
    /// (see [`Connection::for_targets`]).
    pub fn connection<'a>(&self, uris: impl Iterator<Item = &'a Uri>) -> Option<Connection> {
        Connection::for_targets(uris, self.http2, self.timeout)
    }

    /// Sends `template` and reads the whole response; the status, or why not.
    pub async fn send(&self, template: &Template) -> Result<u16, ErrorKind> {
        let request = request(template, template.uri.clone());
        timed(self.timeout, async {
            let response = self.pool.request(request).await.map_err(|e| classify_client(&e))?;
            status_of(response).await
        })
        .await
    }
}

/// A closed-model worker's own HTTP/1.1 keep-alive connection, driven inside
/// the worker's task. Through the pool, every request also wakes the
/// connection's own task and crosses a channel to it, and here the load
/// client shares the cores with the server it measures: what the client
/// spends per request is taken from the server. Made by
/// [`Connection::for_targets`] when every request of the run goes to one
/// `host:port` over HTTP/1.1; other runs use the pool.
pub struct Connection {
    /// Where to connect (`host:port`).
    address: String,
    /// The `Host` header of every request (an origin-form request carries no authority).
    host: HeaderValue,
    timeout: Duration,
    /// The open connection; `None` until the first request and after any error.
    open: Option<Open>,
}

struct Open {
    sender: http1::SendRequest<Full<Bytes>>,
    /// The connection's reads and writes: polled only while a request is out.
    driver: Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

impl Connection {
    /// A connection for a run whose requests all go to one `host:port` over
    /// HTTP/1.1; `None` otherwise.
    pub fn for_targets<'a>(mut uris: impl Iterator<Item = &'a Uri>, http2: bool, timeout: Duration) -> Option<Connection> {
        let first = uris.next()?.authority()?.clone();
        if http2 || !uris.all(|uri| uri.authority() == Some(&first)) {
            return None;
        }
        let port = first.port_u16().unwrap_or(80);
        let host = HeaderValue::from_str(first.as_str()).ok()?;
        Some(Connection { address: format!("{}:{port}", first.host()), host, timeout, open: None })
    }

    /// Sends `template` and reads the whole response; the status, or why not.
    /// A connection that failed or timed out is closed; the next request opens another.
    pub async fn send(&mut self, template: &Template) -> Result<u16, ErrorKind> {
        let result = timed(self.timeout, self.exchange(template)).await;
        if result.is_err() {
            self.open = None;
        }
        result
    }

    async fn exchange(&mut self, template: &Template) -> Result<u16, ErrorKind> {
        let path = template.uri.path_and_query().map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
        let mut request = request(template, path);
        request.headers_mut().entry(HOST).or_insert_with(|| self.host.clone());

        let (result, ended) = {
            let open = self.ready().await?;
            let exchange = async {
                let response = open.sender.send_request(request).await.map_err(|e| classify(&e))?;
                status_of(response).await
            };
            let mut exchange = std::pin::pin!(exchange);
            tokio::select! {
                biased;
                result = &mut exchange => (result, false),
                ended = open.driver.as_mut() => match ended {
                    // Closed once the response was read (`Connection: close`): the
                    // answer is whole, or the exchange fails for want of it.
                    Ok(()) => (exchange.await, true),
                    Err(e) => (Err(classify(&e)), true),
                },
            }
        };
        if ended {
            // A finished connection must not be polled again.
            self.open = None;
        }
        result
    }

    /// The open connection, once it can take a request. One the server
    /// closed after its last response (`Connection: close`, an idle
    /// timeout) is replaced once: that is no error of this request.
    async fn ready(&mut self) -> Result<&mut Open, ErrorKind> {
        for attempt in 0..2 {
            if self.open.as_ref().is_none_or(|open| open.sender.is_closed()) {
                self.open = Some(self.connect().await?);
            }
            let open = self.open.as_mut().expect("opened above");
            let ready = tokio::select! {
                biased;
                ready = open.sender.ready() => ready.is_ok(),
                _ = open.driver.as_mut() => false,
            };
            if ready {
                return Ok(self.open.as_mut().expect("ready above"));
            }
            self.open = None;
            if attempt == 1 {
                break;
            }
        }
        Err(ErrorKind::Reset)
    }

    async fn connect(&self) -> Result<Open, ErrorKind> {
        let stream = TcpStream::connect(&self.address).await.map_err(|_| ErrorKind::Connect)?;
        stream.set_nodelay(true).map_err(|_| ErrorKind::Connect)?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream)).await.map_err(|_| ErrorKind::Connect)?;
        Ok(Open { sender, driver: Box::pin(driver) })
    }
}

/// `template` as a request to `uri` (absolute for the pool, origin-form on
/// a connection of one's own).
fn request(template: &Template, uri: Uri) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(template.body()));
    *request.method_mut() = template.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = template.headers.clone();
    request
}

/// The response's status, once its whole body is read.
async fn status_of(response: hyper::Response<hyper::body::Incoming>) -> Result<u16, ErrorKind> {
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(|e| classify(&e))?;
    Ok(status)
}

/// `exchange`, or a `timeout` error once `limit` has passed.
async fn timed<T>(limit: Duration, exchange: impl Future<Output = Result<T, ErrorKind>>) -> Result<T, ErrorKind> {
    tokio::time::timeout(limit, exchange).await.unwrap_or(Err(ErrorKind::Timeout))
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
