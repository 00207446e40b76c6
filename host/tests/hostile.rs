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
    // 2,000 connects reset at once, at the limit and below it.
    drop(engines.split_off(10));
    support::wait_metric(&host, "broker_active_connections", &[], |v| v == 10.0).await;
    for _ in 0..2000 {
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

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_message_over_the_size_limit_closes_its_session_only() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let host = Host::start("tracker", &[]);
    let connect = || async {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", host.traffic);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let _open = ws.next().await.unwrap().unwrap();
        ws.send(Message::text("40")).await.unwrap();
        ws
    };
    let mut good = connect().await;
    let mut huge = connect().await;
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
