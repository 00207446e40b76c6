//! SIGINT ends the server with success, as a return from `main`: only then
//! does a profile-guided build's instrumented binary write its profile
//! (`xtask/src/pgo.rs` trains it that way).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn an_interrupted_server_exits_with_success() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_prime-native")).arg("127.0.0.1:0").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on "), "{line}");
    assert!(Command::new("kill").args(["-INT", &server.id().to_string()]).status().unwrap().success());
    let give_up = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > give_up {
            server.kill().unwrap();
            panic!("the server did not exit within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
