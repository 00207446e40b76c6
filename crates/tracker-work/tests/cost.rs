//! `tracker-work-cost` as `cargo xtask bench-sockets` runs it: one number on
//! standard output, for one thread or for several working at once.

use std::process::Command;

fn cost(args: &[&str]) -> (Option<f64>, String, Option<i32>) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracker-work-cost")).args(args).output().expect("tracker-work-cost runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    (stdout, String::from_utf8_lossy(&out.stderr).into_owned(), out.status.code())
}

#[test]
fn several_threads_are_timed_at_once_and_give_one_cost_per_client_tick() {
    let (ns, stderr, code) = cost(&["--threads", "2", "100"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(ns.is_some_and(|ns| ns > 0.0), "no cost printed: {stderr}");
    assert!(stderr.contains("on 2 thread(s)"), "{stderr}");
}

#[test]
fn a_bad_argument_is_named_and_fails() {
    for args in [&["--threads", "0"][..], &["--threads"], &["many"]] {
        let (ns, stderr, code) = cost(args);
        assert_eq!((ns, code), (None, Some(2)), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: tracker-work-cost"), "{args:?}: {stderr}");
    }
}
