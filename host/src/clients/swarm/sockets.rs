//! `scalelab swarm sockets`: socket.io clients (Engine.IO 4, WebSocket
//! transport), one task each, speaking the same packets as the host's
//! transport (`protocol::socketio`). Each client connects, answers the
//! server's pings, counts the `clock` and `value` events it receives for
//! `--hold` (or until `--ticks` whole ticks), then disconnects; the summary
//! shows how many events per second each client got, which is how a server
//! falling behind shows, and whether every client got its ticks in order,
//! which is what tests assert (a rate depends on the machine, order does not).

use super::{serve_metrics, stop_signal};
use crate::cli::{OutputFormat, SocketsArgs};
use crate::process_stats;
use crate::protocol::socketio::{self as packet, Packet};
use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use prometheus::{IntCounter, IntGauge, Registry};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Stats {
    connected: IntGauge,
    failures: IntCounter,
    events: IntCounter,
    /// One entry per client that connected.
    clients: Mutex<Vec<ClientResult>>,
}

/// What one client saw.
#[derive(Debug, Clone, Default)]
struct ClientResult {
    clock: u64,
    events: u64,
    /// Whole ticks: a `clock` event followed by its `value`.
    ticks: u64,
    /// Events that broke the tick order: a `value` with no `clock` before it,
    /// two `clock`s in a row, a clock going backwards, or a clock that is not a number.
    out_of_order: u64,
    /// Seconds between its first and last `clock` event.
    span: f64,
    /// The server closed it (or the connection failed) before the hold ended.
    dropped: bool,
}

/// The final summary (`--output json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub clients: u32,
    pub connected: usize,
    pub failed: u64,
    pub dropped_early: usize,
    /// Ticks (`clock` events) per second per client.
    pub ticks_per_s_min: f64,
    pub ticks_per_s_p1: f64,
    pub ticks_per_s_median: f64,
    /// All events per second per client.
    pub events_per_s_min: f64,
    pub events_per_s_p1: f64,
    pub events_per_s_median: f64,
    pub events_total: u64,
    /// The fewest whole ticks one connected client received.
    pub ticks_min: u64,
    /// Events out of tick order, over all clients (0 when the server keeps order).
    pub out_of_order: u64,
    pub duration_s: f64,
    /// CPU seconds the swarm itself used (user + system): on a machine it
    /// shares with the server, what the server did not get.
    pub cpu_s: f64,
}

pub async fn run(args: SocketsArgs) -> Result<()> {
    let registry = Registry::new();
    let stats = Arc::new(Stats {
        connected: IntGauge::new("swarm_sockets_connected", "socket.io clients connected now")?,
        failures: IntCounter::new("swarm_socket_failures_total", "Clients that failed to connect")?,
        events: IntCounter::new("swarm_socket_events_total", "Events received by all clients")?,
        clients: Mutex::new(Vec::new()),
    });
    registry.register(Box::new(stats.connected.clone()))?;
    registry.register(Box::new(stats.failures.clone()))?;
    registry.register(Box::new(stats.events.clone()))?;
    serve_metrics(args.metrics_listen, registry).await?;
    let stop = stop_signal(None)?;
    let ws_url = ws_url(&args.url);
    tracing::info!(url = %ws_url, clients = args.clients, hold = ?args.hold, "starting socket.io clients");

    let started = Instant::now();
    let cpu_at_start = process_stats::read().1;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.clients {
        if n > 0 && !args.spawn_interval.is_zero() {
            tokio::time::sleep(args.spawn_interval).await;
        }
        if *stop.borrow() {
            break;
        }
        tasks.spawn(client(ws_url.clone(), args.hold, args.ticks, stats.clone(), stop.clone()));
    }
    while tasks.join_next().await.is_some() {}

    let summary = summarise(&stats, args.clients, started.elapsed(), process_stats::read().1 - cpu_at_start);
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&summary).context("encoding the summary")?),
        OutputFormat::Table => print!("{}", table(&summary)),
    }
    Ok(())
}

/// The WebSocket URL of socket.io clients of the server at `url` (`http://host:port`).
pub(crate) fn ws_url(url: &str) -> String {
    let base = url.trim_end_matches('/');
    format!("{}/socket.io/?EIO=4&transport=websocket", base.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1))
}

/// One client: connect, hold (or count `ticks`), disconnect.
async fn client(url: String, hold: Duration, ticks: Option<u64>, stats: Arc<Stats>, mut stop: watch::Receiver<bool>) {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, connect(&url)).await;
    let mut ws = match connected {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            stats.failures.inc();
            tracing::warn!(error = %e, "socket.io client failed to connect");
            return;
        }
        Err(_) => {
            stats.failures.inc();
            tracing::warn!("socket.io client timed out connecting");
            return;
        }
    };
    stats.connected.inc();
    let mut result = ClientResult::default();
    let mut order = TickOrder::default();
    let (mut first_clock, mut last_clock) = (None, None);
    let until = async {
        tokio::select! {
            _ = tokio::time::sleep(hold) => {}
            _ = stop.changed() => {}
        }
    };
    result.dropped = listen(&mut ws, until, |data| {
        result.events += 1;
        stats.events.inc();
        if data.starts_with("[\"clock\"") {
            result.clock += 1;
            let now = Instant::now();
            first_clock.get_or_insert(now);
            last_clock = Some(now);
        }
        order.event(data, &mut result);
        ticks.is_none_or(|wanted| result.ticks < wanted)
    })
    .await;
    stats.connected.dec();
    if let (Some(first), Some(last)) = (first_clock, last_clock) {
        result.span = last.duration_since(first).as_secs_f64();
    }
    stats.clients.lock().unwrap().push(result);
}

/// Reads a connected client's packets until `until` resolves or
/// `on_event` (given each event's data) returns false, answering pings;
/// true when the server closed the connection (or it failed) first. On a
/// normal end the client disconnects (`41`) and closes.
pub(crate) async fn listen(ws: &mut Socket, until: impl Future<Output = ()>, mut on_event: impl FnMut(&str) -> bool) -> bool {
    tokio::pin!(until);
    let dropped = loop {
        tokio::select! {
            _ = &mut until => break false,
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => match packet::parse(&text) {
                    Ok(Packet::Ping) if ws.send(Message::text("3")).await.is_err() => break true,
                    Ok(Packet::Event { data, .. }) if !on_event(data) => break false,
                    Ok(Packet::Disconnect | Packet::Close) => break true,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break true,
                Some(Ok(_)) => {}
            },
        }
    };
    if !dropped {
        let _ = ws.send(Message::text("41")).await;
        let _ = ws.close(None).await;
    }
    dropped
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// WebSocket, open packet, connect packet, connect answer.
pub(crate) async fn connect(url: &str) -> Result<Socket> {
    let config = packet::ws_config();
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let open = next_text(&mut ws).await?;
    if !matches!(packet::parse(&open), Ok(Packet::Open(_))) {
        anyhow::bail!("expected an open packet, got {open:?}");
    }
    ws.send(Message::text("40")).await?;
    loop {
        let text = next_text(&mut ws).await?;
        match packet::parse(&text) {
            Ok(Packet::Connect(_)) => return Ok(ws),
            Ok(Packet::Ping) => ws.send(Message::text("3")).await?,
            Ok(Packet::ConnectError(e)) => anyhow::bail!("the server refused the connect: {e}"),
            _ => anyhow::bail!("expected a connect answer, got {text:?}"),
        }
    }
}

async fn next_text(ws: &mut Socket) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => anyhow::bail!("unexpected frame {other:?}"),
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("the server closed the connection"),
        }
    }
}

/// Checks that events come as ticks: `["clock",<ms>]` with the clock never
/// going back, then `["value",...]`. Other events are not the tracker's and
/// are left alone.
#[derive(Debug, Default)]
struct TickOrder {
    /// The last clock, while its `value` is awaited.
    awaiting_value: bool,
    last_ms: u64,
}

impl TickOrder {
    fn event(&mut self, data: &str, result: &mut ClientResult) {
        if let Some(rest) = data.strip_prefix("[\"clock\",") {
            let ms = rest.strip_suffix(']').and_then(|ms| ms.parse::<u64>().ok());
            match ms {
                Some(ms) if !self.awaiting_value && ms >= self.last_ms => self.last_ms = ms,
                Some(ms) => {
                    result.out_of_order += 1;
                    self.last_ms = self.last_ms.max(ms);
                }
                None => result.out_of_order += 1,
            }
            self.awaiting_value = true;
        } else if data.starts_with("[\"value\"") {
            if self.awaiting_value {
                result.ticks += 1;
            } else {
                result.out_of_order += 1;
            }
            self.awaiting_value = false;
        }
    }
}

fn summarise(stats: &Stats, clients: u32, elapsed: Duration, cpu_s: f64) -> Summary {
    let results = stats.clients.lock().unwrap();
    let rates = |count: fn(&ClientResult) -> u64| -> Vec<f64> {
        let mut rates: Vec<f64> =
            results.iter().map(|r| if r.span > 0.0 { count(r).saturating_sub(1) as f64 / r.span } else { 0.0 }).collect();
        rates.sort_by(f64::total_cmp);
        rates
    };
    let at = |sorted: &[f64], q: f64| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    };
    // Two events per tick: `clock` and `value`.
    let ticks = rates(|r| r.clock);
    let events = rates(|r| r.events);
    Summary {
        clients,
        connected: results.len(),
        failed: stats.failures.get(),
        dropped_early: results.iter().filter(|r| r.dropped).count(),
        ticks_per_s_min: at(&ticks, 0.0),
        ticks_per_s_p1: at(&ticks, 0.01),
        ticks_per_s_median: at(&ticks, 0.5),
        events_per_s_min: at(&events, 0.0),
        events_per_s_p1: at(&events, 0.01),
        events_per_s_median: at(&events, 0.5),
        events_total: stats.events.get(),
        ticks_min: results.iter().map(|r| r.ticks).min().unwrap_or(0),
        out_of_order: results.iter().map(|r| r.out_of_order).sum(),
        duration_s: elapsed.as_secs_f64(),
        cpu_s,
    }
}

fn table(s: &Summary) -> String {
    format!(
        "clients              {} ({} connected, {} failed, {} dropped early)\n\
         ticks/s per client   min {:.1}  p1 {:.1}  median {:.1}\n\
         events/s per client  min {:.1}  p1 {:.1}  median {:.1}\n\
         events received      {}\n\
         whole ticks          min {} per client, {} events out of order\n\
         duration             {:.1} s\n\
         swarm CPU            {:.1} s ({:.2} cores)\n",
        s.clients,
        s.connected,
        s.failed,
        s.dropped_early,
        s.ticks_per_s_min,
        s.ticks_per_s_p1,
        s.ticks_per_s_median,
        s.events_per_s_min,
        s.events_per_s_p1,
        s.events_per_s_median,
        s.events_total,
        s.ticks_min,
        s.out_of_order,
        s.duration_s,
        s.cpu_s,
        s.cpu_s / s.duration_s.max(1e-9)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(events: &[&str]) -> ClientResult {
        let (mut order, mut result) = (TickOrder::default(), ClientResult::default());
        for event in events {
            order.event(event, &mut result);
        }
        result
    }

    #[test]
    fn whole_ticks_in_order_are_counted() {
        let r = order(&[r#"["clock",5]"#, r#"["value",0.5]"#, r#"["clock",5]"#, r#"["value",1]"#, r#"["clock",9]"#]);
        assert_eq!((r.ticks, r.out_of_order), (2, 0));
    }

    #[test]
    fn events_out_of_tick_order_are_counted() {
        // A value first, two clocks in a row, a clock going back, a clock that is not a number.
        assert_eq!(order(&[r#"["value",1]"#]).out_of_order, 1);
        assert_eq!(order(&[r#"["clock",1]"#, r#"["clock",2]"#, r#"["value",1]"#]).out_of_order, 1);
        let back = order(&[r#"["clock",7]"#, r#"["value",1]"#, r#"["clock",6]"#, r#"["value",1]"#]);
        assert_eq!((back.ticks, back.out_of_order), (2, 1));
        assert_eq!(order(&[r#"["clock","soon"]"#, r#"["value",1]"#]).out_of_order, 1);
        // Other events are not the tracker's: left alone.
        assert_eq!(order(&[r#"["hello"]"#]).out_of_order, 0);
    }
}
