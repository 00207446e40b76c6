//! 200 socket.io clients of `scalelab swarm sockets` on the `tracker` guest
//! with the default work. A test binary of its own, so that no other test
//! competes for the CPU while it runs.

mod support;

use support::{Host, swarm_summary, wait_metric};

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_clients_each_get_ninety_ticks_per_second() {
    let host = Host::start("tracker", &[]);
    let mut swarm = support::scalelab();
    swarm
        .args(["--log-format", "json", "swarm", "sockets", "--url", &host.url(""), "--clients", "200"])
        .args(["--spawn-interval", "2ms", "--hold", "6s", "--metrics-listen", "off", "--output", "json"])
        .env_remove("RUST_BACKTRACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let swarm = swarm.spawn().unwrap();
    let active = wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v >= 200.0).await;
    assert_eq!(active, 200.0);
    let summary = tokio::task::spawn_blocking(move || swarm_summary(swarm)).await.unwrap();
    assert_eq!((summary["connected"].as_u64(), summary["failed"].as_u64()), (Some(200), Some(0)), "{summary:#}");
    assert_eq!(summary["dropped_early"], 0, "{summary:#}");
    // clock and value each arrive once per tick.
    let slowest = summary["ticks_per_s_min"].as_f64().unwrap();
    assert!(slowest >= 90.0, "every client gets at least 90 ticks per second: {summary:#}");
    assert!(summary["events_per_s_min"].as_f64().unwrap() >= 180.0, "{summary:#}");
    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 0.0).await;
    assert_eq!(host.metrics().await.value("mx_server_handled_conn_total", &[("app", "mx-server")]), Some(200.0));
}
