//! The control API on the host's HTTP traffic port (any method):
//! `/dowork?time=N` (default 50000) broadcasts `DOWORK:N`, `/kill?code=N`
//! (default 0) broadcasts `KILL:N`; both answer `Broker, sent to <n> engines
//! '<cmd>` as text/plain. `/` reports the connection and engine counts.

use crate::bindings::exports::wasi::http::incoming_handler::Guest;
use crate::bindings::scalelab::guests::log::{Level, log};
use crate::bindings::scalelab::guests::{metrics, sessions};
use crate::{Broker, registry};
use guest_http::Response;
use guest_http::wasi::http::types::{IncomingRequest, ResponseOutparam};
use heartbeat::BrokerMessage;

impl Guest for Broker {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (status, body) = match path {
            "/dowork" | "/kill" if !authorized(&request, query) => {
                (401, "unauthorized: this broker needs its control token (Authorization: Bearer <token>)\n".to_string())
            }
            "/dowork" => match number(query, "time", 50_000u64) {
                Ok(ms) => command(BrokerMessage::DoWork { ms }),
                Err(e) => (400, e),
            },
            "/kill" => match number(query, "code", 0i64) {
                Ok(code) => command(BrokerMessage::Kill { code }),
                Err(e) => (400, e),
            },
            "/" => {
                (200, format!("Broker: {} connections, {} registered engines\n", sessions::count(), registry::registered_count()))
            }
            _ => (404, format!("no route {path}: use /dowork?time=MS or /kill?code=N\n")),
        };
        Response::text(status, body).send(response_out);
    }
}

/// Broadcasts `message` to every connection.
fn command(message: BrokerMessage) -> (u16, String) {
    let cmd = message.encode();
    let sent = sessions::broadcast(cmd.as_bytes());
    metrics::add("broker_commands_total", 1.0);
    log(Level::Info, &format!("BROKER: sent '{cmd}' to {sent} engines"));
    (200, format!("Broker, sent to {sent} engines '{cmd}"))
}

/// The value of `name` in the query, or `default` when absent.
fn number<T: std::str::FromStr>(query: &str, name: &str, default: T) -> Result<T, String> {
    let Some(value) = query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')) else {
        return Ok(default);
    };
    value.parse().map_err(|_| format!("{name}={value} is not a whole number\n"))
}

/// True when no token is configured, or the request carries it.
fn authorized(request: &IncomingRequest, query: &str) -> bool {
    let Some(token) = std::env::var("BROKER_TOKEN").ok().filter(|t| !t.is_empty()) else {
        return true;
    };
    let bearer = format!("Bearer {token}");
    let in_header = request.headers().get("authorization").iter().any(|value| value.as_slice() == bearer.as_bytes());
    let in_query = query.split('&').any(|pair| pair.strip_prefix("token=") == Some(token.as_str()));
    in_header || in_query
}
