//! Clients that misbehave on purpose, against the real host on loopback:
//! each attack is bounded in count and time, and each test checks both that
//! the attacker is dealt with and that a well-behaved client is still served.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::{Host, PATIENCE};

/// A raw connection and everything the server sent until it closed it (or
/// `PATIENCE` passed, which fails the test).
fn until_closed(mut stream: TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => received,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => received,
        Err(e) => panic!("the server kept the connection open: {e}"),
    }
}

/// A request a well-behaved client makes, answered with `status`.
fn served(addr: SocketAddr, path: &str, status: u16) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&until_closed(stream)).into_owned();
    assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
}

/// Starts sending a request head one byte at a time, every `pace`, on a
/// thread, until the server closes the connection; returns when it did
/// and how many bytes got through.
fn slowloris(addr: SocketAddr, pace: Duration) -> std::thread::JoinHandle<(Duration, usize)> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: ".iter().chain(std::iter::repeat(&b'a'));
        let mut sent = 0;
        for byte in head {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            sent += 1;
            // A closed connection shows on the next write, or as EOF here.
            stream.set_read_timeout(Some(pace)).unwrap();
            let mut buf = [0u8; 512];
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {} // a 408 or other answer before the close
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
            assert!(started.elapsed() < PATIENCE, "the server never closed a connection trickling its headers");
        }
        (started.elapsed(), sent)
    })
}

#[test]
fn a_slowloris_is_cut_off_after_the_header_read_timeout_on_both_ports_while_others_are_served() {
    let host = Host::start("prime", &["--header-read-timeout", "2s"]);
    let attacks = [slowloris(host.traffic, Duration::from_millis(200)), slowloris(host.admin, Duration::from_millis(200))];
    // While the attack runs, normal clients get their answers.
    for _ in 0..3 {
        served(host.traffic, "/prime/10", 200);
        served(host.admin, "/healthz", 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    for attack in attacks {
        let (took, sent) = attack.join().unwrap();
        // Cut off by the timeout (2 s), not by a size limit: about 10 bytes got through.
        assert!(took >= Duration::from_secs(2), "closed after {took:?}");
        assert!(sent < 200, "{sent} bytes trickled in before the close");
    }
}

#[test]
fn oversized_and_malformed_heads_are_refused_before_the_guest() {
    let host = Host::start("prime", &[]);
    // More header fields than hyper accepts (100): 431. (A head larger than
    // its buffer gets 431 too, but the server then closes with the rest of
    // the head unread, and the reset can overtake the answer.)
    let mut stream = TcpStream::connect(host.traffic).unwrap();
    let fields: String = (0..200).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    stream.write_all(format!("GET /prime/1 HTTP/1.1\r\nHost: x\r\n{fields}\r\n").as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&until_closed(stream)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    // Garbage instead of a request line: 400.
    let mut stream = TcpStream::connect(host.traffic).unwrap();
    stream.write_all(b"\x01\x02NOT HTTP AT ALL\r\n\r\n").unwrap();
    let answer = String::from_utf8_lossy(&until_closed(stream)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    // Neither reached the guest, and the host still serves.
    served(host.traffic, "/prime/10", 200);
}

#[test]
fn connections_beyond_the_cap_are_refused_clearly_and_served_again_once_others_close() {
    let host = Host::start("prime", &["--max-connections", "50", "--header-read-timeout", "10m"]);
    // 50 idle connections fill the traffic port.
    let mut idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(host.traffic).unwrap()).collect();
    // The host has taken them all (each holds its slot once accepted).
    let give_up = Instant::now() + PATIENCE;
    let refused = loop {
        let mut stream = TcpStream::connect(host.traffic).unwrap();
        let _ = stream.write_all(b"GET /prime/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = String::from_utf8_lossy(&until_closed(stream)).into_owned();
        if answer.starts_with("HTTP/1.1 503 ") {
            break answer;
        }
        assert!(Instant::now() < give_up, "never refused: {answer}");
    };
    assert!(refused.contains("\"kind\":\"connection_limit\"") && refused.contains("--max-connections"), "{refused}");
    // The admin port is not limited: probes still answer.
    served(host.admin, "/healthz", 200);
    let metrics = support::Metrics(reqwest::blocking::get(host.admin_url("/metrics")).unwrap().text().unwrap());
    let rejected = metrics.value("scalelab_http_rejections_total", &[("reason", "connection_limit")]).unwrap();
    assert!(rejected >= 1.0);
    // Ten idle clients leave: new ones are served again.
    idle.truncate(40);
    let give_up = Instant::now() + PATIENCE;
    loop {
        let mut stream = TcpStream::connect(host.traffic).unwrap();
        let _ = stream.write_all(b"GET /prime/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = String::from_utf8_lossy(&until_closed(stream)).into_owned();
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < give_up, "not served after connections closed: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(idle);
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on an open socket we own, with a correctly sized linger.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(stream);
}

/// A broker engine's registration, and its reply.
fn register(addr: SocketAddr, id: &str) -> TcpStream {
    try_register(addr, id).unwrap_or_else(|e| panic!("engine {id} could not register: {e}"))
}

/// A registration that may be refused (the session limit).
fn try_register(addr: SocketAddr, id: &str) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.write_all(format!("NewEngine:{id}:0\n").as_bytes())?;
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply)?;
    if &reply[..n] != b"SUCCESS:Registered" {
        return Err(std::io::Error::other(format!("reply {:?}", String::from_utf8_lossy(&reply[..n]))));
    }
    Ok(stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn session_floods_are_refused_and_counted_while_open_sessions_go_on() {
    let host = Host::start("broker", &["--max-sessions", "20"]);
    let addr = host.tcp();
    let mut engines: Vec<TcpStream> = (0..20).map(|i| register(addr, &format!("e{i}"))).collect();
    // 200 more connections: each refused (closed at once), counted.
    for _ in 0..200 {
        let stream = TcpStream::connect(addr).unwrap();
        assert!(until_closed(stream).is_empty(), "a connection over --max-sessions got an answer");
    }
    let refused =
        support::wait_metric(&host, "scalelab_sessions_refused_total", &[("reason", "session_limit")], |v| v >= 200.0).await;
    assert_eq!(refused, 200.0);
    // 10,000 connects reset at once, at the limit and below it.
    drop(engines.split_off(10));
    support::wait_metric(&host, "broker_active_connections", &[], |v| v == 10.0).await;
    for _ in 0..10_000 {
        reset(TcpStream::connect(addr).unwrap());
    }
    // The host is unaffected: a new engine registers (once the burst's
    // connections still queued in the kernel have been taken and closed), the
    // ten go on, and whatever the burst opened closes again.
    let give_up = Instant::now() + PATIENCE;
    while try_register(addr, "late").is_err() {
        assert!(Instant::now() < give_up, "no new engine could register after the burst");
        std::thread::sleep(Duration::from_millis(50));
    }
    support::wait_metric(&host, "scalelab_sessions_active", &[("transport", "tcp")], |v| v == 10.0).await;
    support::wait_metric(&host, "broker_active_connections", &[], |v| v == 10.0).await;
    for (i, engine) in engines.iter_mut().enumerate() {
        engine.write_all(format!("HeartBeat:e{i}:1\n").as_bytes()).unwrap();
    }
    support::wait_metric(&host, "broker_heartbeats_total", &[], |v| v == 10.0).await;
    assert_eq!(host.metrics().await.value("broker_sequence_errors_total", &[]), Some(0.0));
    assert_eq!(host.metrics().await.value("scalelab_guest_failures_total", &[]), Some(0.0));
}

/// A raw socket.io client over a WebSocket, connected to the main namespace.
async fn socketio_client(
    host: &Host,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt, StreamExt};
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", host.traffic);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let _open = ws.next().await.unwrap().unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("40")).await.unwrap();
    ws
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_message_over_the_size_limit_closes_its_session_only() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let host = Host::start("tracker", &[]);
    let mut good = socketio_client(&host).await;
    let mut huge = socketio_client(&host).await;
    // 2 MiB in one message: over the host's 1 MiB limit. The write may fail
    // part way once the host closes.
    let _ = huge.send(Message::text(format!("42[\"x\",\"{}\"]", "a".repeat(2 << 20)))).await;
    let closed = loop {
        match tokio::time::timeout(PATIENCE, huge.next()).await.expect("the host kept the oversized session open") {
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            _ => break true,
        }
    };
    assert!(closed);
    support::wait_metric(&host, "scalelab_sessions_closed_total", &[("reason", "error")], |v| v == 1.0).await;
    // The other session still gets its events.
    still_served(&host, &mut good).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_client_that_stops_reading_is_closed_as_a_slow_consumer_while_others_are_served() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    // The guest sends from each session's own tick, as the tracker does
    // (here 64 KiB a tick, so that the kernel's buffers fill in seconds, not
    // the minutes they take at the tracker's ~6 KB/s). Once a write to the
    // silent client blocks, its ticks wait and nothing more is queued for
    // it: the queue never overflows, and only the blocked write's timeout
    // ends the session. Before --session-write-timeout it hung for ever.
    let quiet = ["--socketio-ping-interval", "10m", "--socketio-ping-timeout", "10m"];
    let host = Host::start("fixture-session", &[&quiet[..], &["--session-write-timeout", "2s"]].concat());
    let mut silent = socketio_client(&host).await;
    silent.send(Message::text("42[\"flood 64\"]")).await.unwrap();
    let mut good = socketio_client(&host).await;
    good.send(Message::text("42[\"tick-on\"]")).await.unwrap();

    support::wait_metric(&host, "scalelab_sessions_closed_total", &[("reason", "slow_consumer")], |v| v == 1.0).await;
    let logged = host.logs().into_iter().find(|l| l["message"] == "slow consumer: session closed");
    assert_eq!(logged.expect("a slow consumer warning")["cause"], "stalled");
    // The reading client still gets its ticks.
    still_served(&host, &mut good).await;
    drop(silent);
}

/// Sends a request head announcing a large body, then `body` bytes one at a
/// time every `pace` until the server closes; returns what it answered.
fn trickle_body(addr: SocketAddr, head: &str, pace: Duration) -> (Duration, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    stream.set_read_timeout(Some(pace)).unwrap();
    let mut answer = Vec::new();
    loop {
        assert!(started.elapsed() < PATIENCE, "a body that never ends held its request: {}", String::from_utf8_lossy(&answer));
        if stream.write_all(b"a").is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_that_never_ends_is_bounded_by_the_deadline() {
    let host = Host::start("fixture-wstd", &["--deadline", "1s"]);
    let heads = [
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n",
    ];
    for head in heads {
        let (took, answer) = trickle_body(host.traffic, head, Duration::from_millis(50));
        assert!(answer.starts_with("HTTP/1.1 408 "), "{head:?}: {answer}");
        assert!(answer.contains("within the 1s deadline (--deadline)"), "{answer}");
        assert!(took < PATIENCE, "{head:?} held for {took:?}");
        served(host.traffic, "/", 200);
    }
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_http_rejections_total", &[("reason", "body_timeout")]), Some(2.0));
    assert_eq!(metrics.value("scalelab_http_requests_in_flight", &[]), Some(0.0));
}

/// Rapid reset (CVE-2023-44487): one HTTP/2 connection opens requests that
/// start guest calls and cancels each at once, 10,000 times. The host keeps
/// serving other clients, every cancelled call ends (the in-flight gauge
/// returns to 0), and a flood of 1,000 concurrent streams on one connection
/// is served in full.
#[tokio::test(flavor = "multi_thread")]
async fn http2_rapid_reset_and_stream_floods_leave_served_traffic_going() {
    let host = Host::start("fixture-wstd", &[]);
    let url = host.url("/sleep?ms=1000");
    let tcp = tokio::net::TcpStream::connect(host.traffic).await.unwrap();
    let (mut attacker, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut cancelled = 0;
    let started = Instant::now();
    while cancelled < 10_000 {
        // The server may end the connection (GOAWAY) once it sees the attack.
        let Ok(ready) = attacker.clone().ready().await else { break };
        attacker = ready;
        let request = http::Request::get(url.as_str()).body(()).unwrap();
        match attacker.send_request(request, true) {
            Ok((response, _)) => drop(response), // RST_STREAM(CANCEL)
            Err(_) => break,
        }
        cancelled += 1;
    }
    eprintln!("rapid reset: {cancelled} requests cancelled in {:?}", started.elapsed());
    served(host.traffic, "/", 200);
    support::wait_in_flight(&host, 0).await;
    drop(attacker);
    let _ = connection.await;

    // h2 (0.4.20) as a client ends a connection on which more than 100 small
    // DATA frames wait unread; 1,000 responses arrive faster than the tasks
    // below read them, so this client lifts that budget.
    let tcp = tokio::net::TcpStream::connect(host.traffic).await.unwrap();
    let (client, connection) =
        h2::client::Builder::new().data_frame_budget(1 << 30).handshake::<_, bytes::Bytes>(tcp).await.unwrap();
    tokio::spawn(connection);
    // Streams over the server's concurrency limit may be refused with
    // REFUSED_STREAM (never processed, so safe to retry): retried here.
    let flood: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            let url = host.url("/");
            tokio::spawn(async move {
                let mut refused = 0;
                loop {
                    match get_h2(client.clone(), &url).await {
                        Err(e) if e.reason() == Some(h2::Reason::REFUSED_STREAM) => refused += 1,
                        answer => return answer.map(|answer| (answer, refused)),
                    }
                }
            })
        })
        .collect();
    let mut refused = 0;
    for request in flood {
        let ((status, body), retries) = request.await.unwrap().expect("a stream of the flood failed");
        assert_eq!((status.as_u16(), body.as_slice()), (200, b"hello from wstd\n".as_slice()));
        refused += retries;
    }
    eprintln!("stream flood: 1000 concurrent streams served, {refused} refused with REFUSED_STREAM and retried");
    served(host.traffic, "/", 200);
}

/// One HTTP/2 GET: the status and the whole body.
async fn get_h2(client: h2::client::SendRequest<bytes::Bytes>, url: &str) -> Result<(http::StatusCode, Vec<u8>), h2::Error> {
    let mut client = client.ready().await?;
    let (response, _) = client.send_request(http::Request::get(url).body(()).unwrap(), true)?;
    let response = response.await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    Ok((status, text))
}

/// The tracker's one remaining socket.io client still gets its events, and
/// is the only session open.
async fn still_served<S>(host: &Host, good: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut events = 0;
    while events < 10 {
        match tokio::time::timeout(PATIENCE, good.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.starts_with("42") => events += 1,
            Some(Ok(_)) => {}
            other => panic!("the good session ended: {other:?}"),
        }
    }
    assert_eq!(host.metrics().await.value("scalelab_sessions_active", &[("transport", "socket.io")]), Some(1.0));
}

/// One WebSocket frame as a client sends it: `first` is the FIN/RSV/opcode
/// byte; masked unless `mask` is `None`.
fn ws_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

const MASK: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

/// A socket.io session opened by hand over a raw socket: the upgrade, the
/// open packet, the connect and its answer. Returns the socket.
fn raw_socketio(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&seen));
    let read_text_frame = |stream: &mut TcpStream| {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 0x81, "a text frame");
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        stream.read_exact(&mut payload).unwrap();
        String::from_utf8(payload).unwrap()
    };
    assert!(read_text_frame(&mut stream).starts_with("0{"), "the open packet");
    stream.write_all(&ws_frame(0x81, b"40", MASK)).unwrap();
    assert!(read_text_frame(&mut stream).starts_with("40{"), "the connect answer");
    stream
}

/// Whatever garbage a WebSocket client sends after connecting, the host
/// closes that session (counted as an error) and the other sessions go on.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_garbage_closes_its_session_only() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let host = Host::start("tracker", &[]);
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", host.traffic);
    let (mut good, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let _open = good.next().await.unwrap().unwrap();
    futures_util::SinkExt::send(&mut good, Message::text("40")).await.unwrap();

    let event = b"42[\"x\"]";
    let mut fragments = ws_frame(0x01, &[b'4'; 65536], MASK); // a text message, not finished
    for _ in 0..20 {
        fragments.extend(ws_frame(0x00, &[b'2'; 65536], MASK)); // 1.3 MB in all: over the 1 MiB limit
    }
    let mut noise = vec![0u8; 1 << 20];
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for byte in &mut noise {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    let attacks: [(&str, Vec<u8>); 7] = [
        ("an unmasked client frame", ws_frame(0x81, event, None)),
        ("a continuation without a start", ws_frame(0x80, event, MASK)),
        ("a text frame that is not UTF-8", ws_frame(0x81, b"42[\"\xff\xfe\"]", MASK)),
        ("a binary frame where text is expected", ws_frame(0x82, event, MASK)),
        ("a reserved bit without an extension", ws_frame(0xc1, event, MASK)),
        ("fragments past the message limit", fragments),
        ("random bytes at full speed", noise),
    ];
    for (i, (attack, bytes)) in attacks.into_iter().enumerate() {
        let mut stream = raw_socketio(host.traffic);
        // The host may close while the rest is still being written.
        let _ = stream.write_all(&bytes);
        until_closed(stream);
        let closed = (i + 1) as f64;
        support::wait_metric(&host, "scalelab_sessions_closed_total", &[("reason", "error")], |v| v == closed).await;
        eprintln!("{attack}: closed");
    }
    // The well-behaved client still gets its events.
    still_served(&host, &mut good).await;
}

/// 64 MiB of random bytes as fast as loopback takes them on one raw TCP
/// session of the broker: counted as malformed, memory stays flat, and an
/// engine beside it heartbeats in sequence throughout.
#[tokio::test(flavor = "multi_thread")]
async fn tcp_garbage_at_full_speed_is_counted_while_engines_go_on() {
    let host = Host::start("broker", &[]);
    let addr = host.tcp();
    let mut engine = register(addr, "steady");
    let before = host.resident_bytes();
    let flood = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut chunk = vec![0u8; 1 << 16];
        let started = Instant::now();
        let mut sent = 0usize;
        while sent < 64 << 20 && started.elapsed() < Duration::from_secs(30) {
            for byte in &mut chunk {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            if stream.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        (sent, started.elapsed())
    });
    let mut beats = 0;
    while !flood.is_finished() || beats < 10 {
        beats += 1;
        engine.write_all(format!("HeartBeat:steady:{beats}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sent, took) = flood.join().unwrap();
    support::wait_metric(&host, "broker_heartbeats_total", &[], |v| v == f64::from(beats)).await;
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("broker_sequence_errors_total", &[]), Some(0.0));
    assert!(metrics.value("broker_malformed_messages_total", &[]).unwrap() > 0.0);
    let grown = host.resident_bytes().saturating_sub(before);
    eprintln!("tcp garbage: {} MiB in {took:?}; {beats} heartbeats; RSS grew {} KiB", sent >> 20, grown >> 10);
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
}

/// 10,000 keep-alive connections, each served one request and then left
/// idle: the host keeps them all open, serves others meanwhile, and each
/// costs it about 32 KiB of resident memory (hyper keeps its 8 KiB read and
/// write buffers; a connection that never sent a request costs about 4 KiB).
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_idle_keep_alive_connections_stay_open_at_bounded_memory() {
    support::raise_fd_limit();
    let host = Host::start("prime", &["--header-read-timeout", "10m"]);
    served(host.traffic, "/prime/10", 200);
    let before = host.resident_bytes();
    let request = b"GET /prime/10 HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut idle = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let mut stream = TcpStream::connect(host.traffic).unwrap();
        stream.write_all(request).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&answer[..n]));
        idle.push(stream);
    }
    let grown = host.resident_bytes().saturating_sub(before);
    let per_connection = grown / 10_000;
    eprintln!("10,000 idle keep-alive connections: RSS grew {} KiB, {per_connection} bytes each", grown >> 10);
    assert!(per_connection < 64 << 10, "{per_connection} bytes per idle connection");
    served(host.traffic, "/prime/10", 200);
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_http_requests_total", &[("code", "200")]), Some(10_002.0));
    // Every one of them is still usable.
    for stream in idle.iter_mut().step_by(100) {
        stream.write_all(request).unwrap();
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200 "));
    }
}
