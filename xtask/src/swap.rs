//! `cargo xtask swap <guest> --url http://HOST:9090`: swaps the guest of one
//! running host through its admin API and confirms it.
//!
//! A guest that names a local file is uploaded as a component; anything else
//! is sent as a name, which the host resolves in its own guest directory. The
//! bearer token comes from `SCALELAB_ADMIN_TOKEN` or `--token-file`.
//! (Patching a Kubernetes ConfigMap and waiting for every pod is not built
//! yet; see the README.)

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct SwapArgs {
    pub guest: String,
    pub url: String,
    pub token_file: Option<PathBuf>,
    pub dry_run: bool,
}

pub fn run(args: &SwapArgs) -> Result<()> {
    let base = args.url.trim_end_matches('/');
    let endpoint = format!("{base}/admin/guest");
    let local = Path::new(&args.guest);
    let upload = local.is_file().then(|| std::fs::read(local)).transpose()
        .with_context(|| format!("reading {}", local.display()))?;
    let what = match &upload {
        Some(bytes) => format!("the component {} ({} bytes)", local.display(), bytes.len()),
        None => format!("the guest name {:?}", args.guest),
    };
    if args.dry_run {
        println!("would send: PUT {endpoint} with {what}, Authorization: Bearer <token>");
        return Ok(());
    }
    let token = token(args.token_file.as_deref())?;

    let before = get(&endpoint)?;
    println!("{base}: serving {} (sha256 {}) since {}", before["name"], short(&before["sha256"]), before["since"]);
    println!("{base}: swapping to {what}");
    let started = Instant::now();
    let target = match (&upload, local.file_stem().and_then(|s| s.to_str())) {
        (Some(_), Some(stem)) => format!("{endpoint}?name={stem}"),
        _ => endpoint.clone(),
    };
    let request = ureq::put(&target)
        .config()
        .http_status_as_error(false)
        .build()
        .header("Authorization", &format!("Bearer {token}"));
    let response = match upload {
        Some(bytes) => request.send(&bytes[..]),
        None => request.send(args.guest.as_bytes()),
    };
    let mut response = response.with_context(|| format!("PUT {endpoint}"))?;
    let status = response.status().as_u16();
    let report: Value = serde_json::from_str(&response.body_mut().read_to_string()?).unwrap_or(Value::Null);
    if status != 200 {
        let reason = report["error"].as_str().unwrap_or("no reason given");
        bail!("{base} refused the swap ({status}): {reason}");
    }
    let after = get(&endpoint)?;
    if after["sha256"] != report["guest"]["sha256"] {
        bail!("{base} reports {} after the swap, not the new guest", after["name"]);
    }
    println!(
        "{base}: now serving {} (sha256 {}): compile {:.1} ms, switch {:.2} ms, {:.0} ms in all",
        after["name"],
        short(&after["sha256"]),
        report["compile_ms"].as_f64().unwrap_or(f64::NAN),
        report["switch_ms"].as_f64().unwrap_or(f64::NAN),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

fn get(url: &str) -> Result<Value> {
    let text = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .with_context(|| format!("GET {url}"))?
        .body_mut()
        .read_to_string()?;
    serde_json::from_str(&text).with_context(|| format!("GET {url} did not answer JSON: {text}"))
}

fn token(file: Option<&Path>) -> Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => std::env::var("SCALELAB_ADMIN_TOKEN")
            .context("set SCALELAB_ADMIN_TOKEN (or give --token-file) to the host's admin token")?,
    };
    Ok(token.trim().to_string())
}

fn short(sha: &Value) -> String {
    sha.as_str().map_or_else(|| "?".into(), |s| s.chars().take(12).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the real host (built by `cargo test --workspace`) and swaps it.
    #[test]
    fn swaps_a_running_host_by_name_and_by_upload() {
        let ws = crate::workspace::Workspace::locate().unwrap();
        let scalelab = ws.target_dir.join("debug/scalelab");
        let guests = ws.target_dir.join("guests");
        assert!(scalelab.is_file() && guests.join("prime.wasm").is_file(), "run through `cargo xtask test`");
        let dir = std::env::temp_dir().join(format!("xtask-swap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "t0ken\n").unwrap();

        let args = ["--guest", "prime", "--admin-token-file"].map(std::ffi::OsString::from);
        let mut args = args.to_vec();
        args.push(dir.join("token").into_os_string());
        // The host is killed when `host` drops, even if an assertion fails.
        let (host, lines) = crate::bench::spawn_host("swap", &scalelab, &guests, &dir.join("cache"), &args, false).unwrap();
        std::thread::spawn(move || for _ in lines {});
        let url = host.admin.clone().expect("admin address logged");
        let swap = |guest: &str| {
            run(&SwapArgs { guest: guest.into(), url: url.clone(), token_file: Some(dir.join("token")), dry_run: false })
        };
        swap("fixture-wstd").unwrap();
        assert_eq!(get(&format!("{url}/admin/guest")).unwrap()["name"], "fixture-wstd");
        swap(guests.join("prime.wasm").to_str().unwrap()).unwrap();
        assert_eq!(get(&format!("{url}/admin/guest")).unwrap()["name"], "prime");
        let refused = swap("nosuch").unwrap_err().to_string();
        assert!(refused.contains("422") && refused.contains("no guest named"), "{refused}");
        let bad_token = run(&SwapArgs { guest: "prime".into(), url: url.clone(), token_file: Some(dir.join("cache")), dry_run: false });
        assert!(bad_token.is_err());

        let _ = std::fs::remove_dir_all(&dir);
    }
}

