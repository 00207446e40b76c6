//! Session guests that misbehave, against the real host: the `fixture-session`
//! guest traps, computes for ever, fills the shared state or declares metrics
//! in a loop on command. One bad call must fail alone (logged, counted), its
//! session and every other must go on, and nothing a guest does may grow the
//! host's memory past a setting.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use support::{Host, PATIENCE, wait_metric};

/// One TCP session of the fixture, read line by line.
struct Session {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Session {
    fn open(addr: SocketAddr) -> Session {
        let writer = TcpStream::connect(addr).unwrap();
        writer.set_read_timeout(Some(PATIENCE)).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        Session { writer, reader }
    }

    fn send(&mut self, command: &str) {
        self.writer.write_all(command.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("the session answered nothing");
        assert!(!line.is_empty(), "the host closed the session");
        line
    }

    /// Sends a command and returns the answer.
    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.line()
    }
}

async fn failures(host: &Host, reason: &str, n: f64) {
    wait_metric(host, "scalelab_guest_failures_total", &[("guest", "fixture-session"), ("reason", reason)], |v| v == n).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_or_an_endless_loop_in_received_or_session_tick_fails_that_call_only() {
    let host = Host::start("fixture-session", &["--deadline", "300ms"]);
    let mut bad = Session::open(host.tcp());
    let mut good = Session::open(host.tcp());
    assert_eq!(bad.ask("hello\n"), "echo:hello\n");

    // `received` traps: no answer, counted; the same session goes on.
    bad.send("trap");
    failures(&host, "trap", 1.0).await;
    assert_eq!(bad.ask("after the trap\n"), "echo:after the trap\n");

    // `received` computes for ever: the deadline stops it; meanwhile and
    // after, the other session is served.
    bad.send("loop");
    assert_eq!(good.ask("while it loops\n"), "echo:while it loops\n");
    failures(&host, "deadline", 1.0).await;
    assert_eq!(bad.ask("after the loop\n"), "echo:after the loop\n");

    // The same in this session's `session-tick`: then its ticks go on.
    assert_eq!(bad.ask("tick-trap"), "tick-trap set\n");
    failures(&host, "trap", 2.0).await;
    assert_eq!(bad.ask("tick-loop"), "tick-loop set\n");
    failures(&host, "deadline", 2.0).await;
    assert_eq!(bad.ask("tick-on"), "tick-on set\n");
    for _ in 0..3 {
        assert_eq!(bad.line(), "tick\n");
    }
    assert_eq!(good.ask("still here\n"), "echo:still here\n");

    let metrics = host.metrics().await;
    assert_eq!(metrics.value("scalelab_sessions_active", &[("transport", "tcp")]), Some(2.0));
    let closed: f64 = metrics
        .0
        .lines()
        .filter(|l| l.starts_with("scalelab_sessions_closed_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(closed, 0.0, "no session was closed");
    let logged = host.logs().iter().filter(|l| l["message"] == "session guest call failed; the session goes on").count();
    assert_eq!(logged, 4, "each failed call is logged once");
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_state_and_metric_declarations_stay_within_their_settings() {
    let host = Host::start(
        "fixture-session",
        &["--state-max-value", "64KiB", "--state-max-bytes", "256KiB", "--guest-max-metrics", "20"],
    );
    let mut session = Session::open(host.tcp());
    assert_eq!(session.ask("state 1000"), "stored 1000\n");

    // One value over --state-max-value: the call fails with the limit's
    // message, nothing is stored, and the session goes on.
    session.send("state 100000");
    failures(&host, "state_limit", 1.0).await;
    let refused = host
        .wait_log(PATIENCE, |l| l["reason"] == "state_limit")
        .unwrap_or_else(|| panic!("the refusal was not logged: {:#?}", host.logs()));
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("over the 65536 of --state-max-value"), "{error}");
    assert_eq!(session.ask("still open\n"), "echo:still open\n");

    // Values within the limit from many sessions: the total stops at
    // --state-max-bytes (four 60 KB values fit in 256 KiB, a fifth does not).
    let mut others: Vec<Session> = (0..5).map(|_| Session::open(host.tcp())).collect();
    for other in &mut others[..4] {
        assert_eq!(other.ask("state 60000"), "stored 60000\n");
    }
    others[4].send("state 60000");
    failures(&host, "state_limit", 2.0).await;
    let metrics = host.metrics().await;
    let held = metrics.value("scalelab_state_bytes", &[]).unwrap();
    assert!(held <= 256.0 * 1024.0, "{held}");
    assert!(held >= 240_000.0, "{held}");
    // The metric counts the failure before its log line reaches the reader.
    let over_total = host.wait_log(PATIENCE, |l| l["error"].as_str().is_some_and(|e| e.contains("--state-max-bytes")));
    assert!(over_total.is_some(), "the refusal was not logged: {:#?}", host.logs());

    // The state outlives sessions; an overwrite with a small value frees room.
    assert_eq!(others[0].ask("state 10"), "stored 10\n");
    assert_eq!(others[4].ask("state 60000"), "stored 60000\n");

    // A guest that declares a metric per user is stopped at --guest-max-metrics.
    let answer = session.ask("metrics 30");
    assert!(answer.starts_with("declared 20 refused 10: "), "{answer}");
    assert!(answer.contains("--guest-max-metrics"), "{answer}");
    let metrics = host.metrics().await;
    let series = (0..30).filter(|i| metrics.has(&format!("fixture_user_{i}{{"))).count();
    assert_eq!(series, 20);
}
