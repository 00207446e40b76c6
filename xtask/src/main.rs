//! `cargo xtask`: the project's tasks, in Rust rather than shell.
//!
//! - `build-guests`: every crate under `guests/` -> `target/guests/<name>.wasm`;
//! - `serve <guest>`: build what is needed and serve a guest on loopback;
//! - `test`: check formatting, build the guests, lint every workspace, then
//!   run every test of the repository;
//! - `bench [--quick]`: the side-by-side benchmark (see `bench.rs`);
//! - `bench-engines`: engines one broker process holds (see `bench_engines.rs`);
//! - `bench-sockets`: socket.io clients the tracker holds at 95 ticks/s (see `bench_sockets.rs`);
//! - `bench-httpbin [--quick]`: the httpbin guest against the real httpbin
//!   under gunicorn, with `httpbin-native` as the ceiling (see `bench_httpbin.rs`);
//! - `bench-instructions [--requests N]`: instructions per request of the wasm
//!   host and its native references, and per client-tick of the tracker's
//!   session path, counted by valgrind (see `bench_instructions.rs`);
//! - `bench-todo [--quick]`: the todo guest on SQLite and Postgres against its
//!   native reference (see `bench_todo.rs`);
//! - `soak [--minutes N] [--guest G]...`: long runs under mixed load with swaps (see `soak.rs`);
//! - `fuzz [--seconds N]`: every fuzz target of `fuzz/` for N seconds (see `fuzz.rs`);
//! - `swap <guest> [--url URL]`: swap the guest of a Deployment (ConfigMap
//!   patch, then wait for every pod) or of one host (see `swap.rs`);
//! - `image [--layout-only]`: the container image, or the same layout as a
//!   directory (see `image.rs`);
//! - `deploy <overlay> [--dry-run]`: server-side apply of `k8s/overlays/<overlay>`,
//!   pruning of other scenarios, then wait for the rollout and print the
//!   Services (see `deploy.rs`).

mod bench;
mod bench_engines;
mod bench_httpbin;
mod bench_instructions;
mod bench_sockets;
mod bench_todo;
mod clients;
mod cluster;
mod configmap_dir;
mod deploy;
mod fuzz;
mod guests;
mod image;
#[cfg(test)]
mod k8s_checks;
mod lint;
mod load_sample;
mod manifests;
mod pgo;
mod process_stats;
mod report;
mod scrape;
mod soak;
mod swap;
mod tools;
mod wasmtime_serve;
mod workspace;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "scalelab's development tasks")]
struct Cli {
    /// Benchmarks use the plain release build instead of the profile-guided
    /// one (faster to build; see xtask/src/pgo.rs). Reports and soaks always
    /// use the plain release build, as the container image ships it.
    #[arg(long, global = true)]
    no_pgo: bool,
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build every guest for wasm32-wasip2 into target/guests/<name>.wasm.
    BuildGuests,
    /// Build the guests and the host, then serve a guest (default: prime).
    Serve {
        /// Guest name (a file in target/guests) or path.
        #[arg(default_value = "prime")]
        guest: String,
        /// Build the host with the release profile.
        #[arg(long)]
        release: bool,
        /// Further `scalelab serve` flags, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Side-by-side benchmark: wasm host vs native reference, printed as a table.
    Bench {
        /// Fewer, shorter rounds: finishes in a few minutes.
        #[arg(long)]
        quick: bool,
    },
    /// How many engines one broker holds: registration time, memory per engine, sequence errors.
    BenchEngines {
        /// Engines [default: 100,000, or what the open-file hard limit allows].
        #[arg(long)]
        engines: Option<u32>,
        /// How long to hold them once all are registered, in seconds (heartbeats every 10 s).
        #[arg(long, default_value_t = 30)]
        hold: u64,
    },
    /// Largest number of socket.io clients the tracker holds at >= 95 ticks/s, against the CPU limit.
    BenchSockets {
        /// Seconds each probe holds its clients.
        #[arg(long, default_value_t = 6)]
        hold: u64,
    },
    /// The httpbin guest against the real httpbin (0.10.4 under gunicorn) and httpbin-native on /uuid and /get.
    BenchHttpbin {
        /// Fewer, shorter rounds: finishes in about a minute and a half.
        #[arg(long)]
        quick: bool,
    },
    /// Instructions per request (valgrind's callgrind) of the wasm host and its native references,
    /// and per client-tick of the tracker's session path with no work.
    BenchInstructions {
        /// Requests counted per server and route.
        #[arg(long, default_value_t = 2000)]
        requests: u32,
    },
    /// The todo guest's locust mix on SQLite and on Postgres against todo-native on the same Postgres.
    BenchTodo {
        /// Fewer, shorter rounds: finishes in about two minutes.
        #[arg(long)]
        quick: bool,
        /// Requests in flight at once (one connection each).
        #[arg(long, default_value_t = 32)]
        concurrency: u32,
    },
    /// `scalelab report` for a guest on this machine, like a pod with a 1-CPU limit: target/report/<guest>.html.
    Report {
        /// prime, httpbin or todo (request rates), tracker (socket.io clients) or broker (engines).
        guest: String,
        /// Shorter steps (3 s, 1 s warm-up instead of 10 s, 3 s).
        #[arg(long)]
        quick: bool,
    },
    /// Long runs under a steady mixed load with a swap every minute: RSS, fds, sessions, errors over time.
    Soak {
        /// Minutes per guest.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Guests to soak [default: prime, broker, tracker].
        #[arg(long)]
        guest: Vec<String>,
    },
    /// Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for a while and prints a table.
    Fuzz {
        /// Seconds each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Swap the guest of a Deployment (patch its ConfigMap in the current kube context, wait for
    /// every ready pod) or, with --url, of one running host through its admin API.
    Swap {
        /// Guest name (resolved by the host), or with --url a local .wasm file (uploaded).
        guest: String,
        /// One host's admin address, e.g. http://127.0.0.1:9090, instead of a Deployment.
        #[arg(long)]
        url: Option<String>,
        /// Namespace [default: the kube context's].
        #[arg(long, conflicts_with = "url")]
        namespace: Option<String>,
        /// The guest ConfigMap.
        #[arg(long, default_value = cluster::DEFAULT_CONFIGMAP, conflicts_with = "url")]
        configmap: String,
        /// The Deployment whose ready pods must serve the new guest.
        #[arg(long, default_value = cluster::DEFAULT_DEPLOYMENT, conflicts_with = "url")]
        deployment: String,
        /// Seconds to wait for every ready pod (the kubelet refreshes mounted ConfigMaps within about a minute).
        #[arg(long, default_value_t = 180, conflicts_with = "url")]
        timeout: u64,
        /// With --url: file with the admin token [default: SCALELAB_ADMIN_TOKEN].
        #[arg(long, requires = "url")]
        token_file: Option<std::path::PathBuf>,
        /// Print the patch (or request) instead of sending it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Build the container image (needs a Docker engine), or with --layout-only
    /// the same static host and guests laid out in a directory as in the image.
    Image {
        /// Write the image's root filesystem to a directory instead of building an image.
        #[arg(long)]
        layout_only: bool,
        /// With --layout-only: the directory [default: target/image/layout].
        #[arg(long, requires = "layout_only")]
        out: Option<std::path::PathBuf>,
        /// The image tag (the manifests in k8s/ use scalelab:dev).
        #[arg(long, default_value = "scalelab:dev", conflicts_with = "layout_only")]
        tag: String,
    },
    /// Apply k8s/overlays/<overlay> with server-side apply in the current kube
    /// context, remove other scenarios' objects, wait for its Deployments to
    /// roll out, print its Services.
    Deploy {
        /// The overlay: prime, broker or tracker.
        overlay: String,
        /// Seconds to wait for every Deployment to be rolled out and available.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Keep the objects another overlay left in the namespace (by default its
        /// autoscaler and load generator are deleted).
        #[arg(long)]
        no_prune: bool,
        /// Print the rendered objects instead of applying them (no cluster needed).
        #[arg(long)]
        dry_run: bool,
    },
    /// Check formatting, build the guests, lint every workspace (clippy, warnings
    /// denied), then run the whole test suite.
    Test {
        /// Further `cargo test` arguments for the host workspace, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let pgo = cli.pgo();
    match run(cli.task, pgo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    /// Whether the task builds profile-guided (`pgo.rs`).
    fn pgo(&self) -> bool {
        !self.no_pgo && self.task.is_bench()
    }
}

impl Task {
    /// The benchmarks: the tasks that build profile-guided (`pgo.rs`).
    fn is_bench(&self) -> bool {
        matches!(
            self,
            Task::Bench { .. }
                | Task::BenchEngines { .. }
                | Task::BenchSockets { .. }
                | Task::BenchHttpbin { .. }
                | Task::BenchInstructions { .. }
                | Task::BenchTodo { .. }
        )
    }
}

fn run(task: Task, pgo: bool) -> Result<()> {
    let ws = workspace::Workspace { pgo, ..workspace::Workspace::locate()? };
    match task {
        Task::BuildGuests => {
            guests::build(&ws)?;
        }
        Task::Serve { guest, release, args } => {
            let guests_dir = guests::build(&ws)?;
            let mut host = if release {
                // The benchmarks' release build, not one of its own: see bench::RELEASE_PACKAGES.
                std::process::Command::new(bench::build_release(&ws)?.join("scalelab"))
            } else {
                let mut cargo = ws.cargo();
                cargo.args(["run", "--package", "scalelab", "--"]);
                cargo
            };
            host.args(["serve", "--guest", &guest, "--guests-dir"]).arg(&guests_dir).args(args);
            workspace::run(&mut host)?;
        }
        Task::Bench { quick } => bench::run(&ws, quick)?,
        Task::BenchSockets { hold } => bench_sockets::run(&ws, std::time::Duration::from_secs(hold))?,
        Task::BenchHttpbin { quick } => bench_httpbin::run(&ws, quick)?,
        Task::BenchInstructions { requests } => bench_instructions::run(&ws, requests)?,
        Task::BenchTodo { quick, concurrency } => bench_todo::run(&ws, quick, concurrency)?,
        Task::Fuzz { seconds } => fuzz::run(&ws, seconds)?,
        Task::Report { guest, quick } => report::run(&ws, &guest, quick)?,
        Task::Soak { minutes, guest } => {
            let guests = if guest.is_empty() { soak::DEFAULT_GUESTS.iter().map(|g| g.to_string()).collect() } else { guest };
            soak::run(&ws, minutes, &guests)?
        }
        Task::BenchEngines { engines, hold } => bench_engines::run(&ws, engines, std::time::Duration::from_secs(hold))?,
        Task::Swap { guest, url: Some(url), token_file, dry_run, .. } => {
            swap::run(&swap::SwapArgs { guest, url, token_file, dry_run })?
        }
        Task::Swap { guest, url: None, namespace, configmap, deployment, timeout, dry_run, .. } => {
            swap::run_cluster(&swap::ClusterSwapArgs {
                guest,
                namespace,
                configmap,
                deployment,
                kubeconfig: None,
                timeout: std::time::Duration::from_secs(timeout),
                poll: std::time::Duration::from_secs(1),
                dry_run,
            })?;
        }
        Task::Image { layout_only, out, tag } => image::run(&ws, &image::ImageArgs { layout_only, out, tag })?,
        Task::Deploy { overlay, timeout, no_prune, dry_run } => {
            deploy::run(
                &ws,
                &deploy::DeployArgs {
                    overlay,
                    kubeconfig: None,
                    timeout: std::time::Duration::from_secs(timeout),
                    poll: std::time::Duration::from_secs(2),
                    prune: !no_prune,
                    dry_run,
                },
            )?;
        }
        Task::Test { args } => {
            lint::format(&ws)?;
            let built = guests::build_all(&ws)?;
            lint::clippy(&ws)?;
            let guests_dir = ws.target_dir.join("guests");
            let clients = clients::ensure(&ws)?;
            let tools = tools::ensure(&ws)?;
            // The image as a directory, for the test that runs the host from it.
            let layout = image::default_dir(&ws);
            image::build_layout(&ws, &layout, &built)?;
            // Guest logic lives in plain crates of the host workspace (such
            // as crates/prime-api) and is tested natively there; the
            // end-to-end tests run the built components.
            let mut cargo = ws.cargo();
            cargo.args(["test", "--workspace"]).args(args);
            cargo.env("SCALELAB_TEST_GUESTS_DIR", &guests_dir);
            cargo.env("SCALELAB_TEST_CLIENTS_DIR", &clients);
            cargo.env("SCALELAB_TEST_TOOLS_DIR", &tools);
            cargo.env("SCALELAB_TEST_HTTPBIN_DIR", tools::httpbin_dir(&ws));
            cargo.env("SCALELAB_TEST_IMAGE_DIR", &layout);
            workspace::run(&mut cargo)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pgo_of(args: &[&str]) -> bool {
        Cli::try_parse_from(args).unwrap().pgo()
    }

    #[test]
    fn benchmarks_build_profile_guided_unless_told_not_to_and_reports_never_do() {
        assert!(pgo_of(&["xtask", "bench", "--quick"]));
        assert!(pgo_of(&["xtask", "bench-todo"]));
        assert!(!pgo_of(&["xtask", "bench", "--no-pgo"]));
        assert!(!pgo_of(&["xtask", "--no-pgo", "bench-sockets"]));
        assert!(!pgo_of(&["xtask", "report", "prime"]));
        assert!(!pgo_of(&["xtask", "soak"]));
    }
}
