//! 200 socket.io clients of `scalelab swarm sockets` on the `tracker` guest
//! with the default work. A test binary of its own, so that no other test
//! competes for the CPU while it runs.
//!
//! It asserts behaviour, not speed: every client gets every tick in order
//! and the counts add up on both sides. How many ticks per second a client
//! gets depends on the machine; that is `cargo xtask bench-sockets`' job.

mod support;

use support::{Host, SCHED_BATCH, swarm_summary, thread_policies, wait_metric};

/// Whole ticks (`clock` then `value`) each client waits for before it disconnects.
const TICKS: u64 = 100;

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_clients_each_get_every_tick_in_order() {
    let host = Host::start("tracker", &[]);
    let ticks = TICKS.to_string();
    // --hold is only a bound: each client leaves after its ticks.
    let extra = ["--clients", "200", "--ticks", &ticks, "--spawn-interval", "2ms", "--hold", "5m"];
    let swarm = support::swarm_sockets_command(&host.url(""), &extra).spawn().unwrap();
    // By default every thread of the swarm runs SCHED_BATCH (`--scheduling`).
    let policies = thread_policies(swarm.id()).await;
    assert!(policies.len() >= 2 && policies.iter().all(|&p| p == SCHED_BATCH), "swarm thread policies: {policies:?}");
    let summary = tokio::task::spawn_blocking(move || swarm_summary(swarm)).await.unwrap();
    assert_eq!((summary["connected"].as_u64(), summary["failed"].as_u64()), (Some(200), Some(0)), "{summary:#}");
    assert_eq!(summary["dropped_early"], 0, "no client was closed by the server: {summary:#}");
    assert_eq!(summary["ticks_min"], TICKS, "every client got all its ticks: {summary:#}");
    assert_eq!(summary["out_of_order"], 0, "every tick came as clock then value, clocks never going back: {summary:#}");
    // Each client left right after the value of its last tick: two events a tick, none lost.
    assert_eq!(summary["events_total"], 200 * TICKS * 2, "{summary:#}");
    // The swarm reports the CPU it took itself: some, and no more than its run on every CPU.
    let (cpu, duration) = (summary["cpu_s"].as_f64().unwrap(), summary["duration_s"].as_f64().unwrap());
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(cpu > 0.0 && cpu <= duration * cpus, "swarm CPU {cpu} s over {duration} s: {summary:#}");

    wait_metric(&host, "mx_server_active_conn_gauge", &[("app", "mx-server")], |v| v == 0.0).await;
    let metrics = host.metrics().await;
    assert_eq!(metrics.value("mx_server_handled_conn_total", &[("app", "mx-server")]), Some(200.0));
    // The guest did the work of at least every tick the clients received.
    let processed = metrics.value("mx_server_processed_fps_total", &[("app", "mx-server")]).unwrap();
    assert!(processed >= (200 * TICKS) as f64, "{processed} client-ticks processed");
}
