//! berth: a host agent that keeps containers, networks and volumes as a directory of YAML
//! manifests describes them, with its own embedded container engine.
#![forbid(unsafe_code)]

mod agent;
mod api;
mod cli;
mod config;
mod events;
mod image_gc;
mod metrics;
mod policy;
mod reconcile;
mod redact;
mod service;
mod source;
mod status;
#[cfg(test)]
mod test_layout;
mod usage;
mod watcher;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Run containers from a directory of YAML manifests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the client commands find the agent's API.
#[derive(clap::Args, Clone)]
struct ApiArgs {
    /// The agent's API: `unix:PATH` (its socket, for root and the berth group) or
    /// `HOST:PORT` (its TCP listener).
    #[arg(long, default_value = cli::client::DEFAULT_ADDR, env = "BERTH_ADDR")]
    addr: cli::client::Endpoint,
    /// A file holding the agent's API token (`apiTokenFile`), for a TCP listener that needs it.
    #[arg(long, value_name = "FILE", env = "BERTH_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

impl ApiArgs {
    fn client(&self) -> anyhow::Result<cli::client::Client> {
        cli::client::Client::new(self.addr.clone(), self.token_file.as_deref())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: watch the manifests and converge the host to them.
    Agent(config::AgentFlags),
    /// Check manifest files and directories with the agent's own loader.
    Validate {
        #[arg(required = true, value_name = "FILE|DIR")]
        dirs: Vec<PathBuf>,
        /// `json`: the problems as a JSON array (`[]` when there are none).
        #[arg(short = 'o', long = "output", value_parser = ["text", "json"], default_value = "text")]
        output: String,
        /// Agent config whose `allowedHostPaths` host paths are checked against (default:
        /// /etc/berth/agent.yaml when it exists; without one, host paths are not judged).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the JSON Schema (draft 2020-12) of manifest documents, for editors.
    ///
    /// Save it and start a manifest with `# yaml-language-server: $schema=<file or url>` for
    /// completion and checks as you type.
    Schema,
    /// Show what the running agent would do if DIR were its manifest directory.
    ///
    /// Loads DIR (default: the agent's own manifest directory) with the agent's loader, reads
    /// the agent's containers through its API, and decides with the agent's own planner:
    /// `+` create, `~` recreate (with the fields that changed), `-` remove, `*` frozen (the
    /// file does not load; its objects stay at their last good version). Changes nothing.
    /// There is no registry traffic: a tag is not resolved, so an image digest change is
    /// shown only for images pinned by digest (`image@sha256:…`) in the manifest.
    Plan {
        /// The directory to plan; default: the agent's own manifest directory.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
        /// `json`: the plan as JSON, in the format of the agent's `GET /v1/plan`.
        #[arg(short = 'o', long = "output", value_parser = ["text", "json"], default_value = "text")]
        output: String,
        /// Exit 2 when there are changes (0 when none, 1 on error).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// List the running agent's containers.
    Ps {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON.
        #[arg(short = 'o', long = "output", value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// List the running agent's images: size, when pulled, which containers use them, and
    /// the progress of pulls running now.
    Images {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON (`GET /v1/images`).
        #[arg(short = 'o', long = "output", value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Show CPU, memory, pids and network traffic of the running containers (all, or the
    /// ones named), from the running agent.
    Stats {
        names: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON (`GET /v1/stats`, one sample).
        #[arg(short = 'o', long = "output", value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Print a container's output (stdout and stderr), from the running agent.
    Logs {
        name: String,
        /// Keep printing new output until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one object of the running agent, whole: a container (NAME), network/NAME or
    /// volume/NAME.
    Inspect {
        target: String,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(short = 'o', long = "output", value_parser = ["json", "yaml"], default_value = "json")]
        output: String,
    },
    /// Show what the agent did: each action's result and each git revision switched to or
    /// sync error, from the last 10,000 it keeps.
    Events {
        /// From this long ago (`10m`) or this unix time [default: 1h]
        #[arg(long)]
        since: Option<String>,
        /// Only events with name=NAME, object=KIND/NAME, action=ACTION or reason=ok|error
        /// (repeat to combine).
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        api: ApiArgs,
        /// `json`: each event's JSON, one per line.
        #[arg(short = 'o', long = "output", value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
    /// List the running agent's networks or volumes.
    Ls {
        #[arg(value_parser = ["networks", "volumes"])]
        what: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON.
        #[arg(short = 'o', long = "output", value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Show the running agent at a glance: version, source and revision, the last pass,
    /// containers by state, manifest problems, a blocked prune.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON (`GET /v1/status`).
        #[arg(short = 'o', long = "output", value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
    /// Show where the running agent's manifests come from: the directory, or the git source
    /// with its revision, last sync and last error.
    Source {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON (`GET /v1/source`).
        #[arg(short = 'o', long = "output", value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
    /// Internal: one fetch of the git source (request on stdin, outcome on stdout).
    #[command(hide = true)]
    SourceFetch,
    /// Internal: the per-container monitor process the agent starts.
    #[command(hide = true)]
    Shim { bundle: PathBuf },
    /// Internal: runs one exec health probe inside a running container.
    #[command(hide = true)]
    ExecProbe {
        bundle: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        pid: i32,
        #[arg(long)]
        timeout_ms: u64,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The shim must stay single-threaded (it forks): no runtime, no tracing threads.
        Command::Shim { bundle } => {
            ExitCode::from(berth_engine::runtime::shim::main(&bundle) as u8)
        }
        // Forks and enters a container: single-threaded as well.
        Command::ExecProbe {
            bundle,
            id,
            pid,
            timeout_ms,
            cmd,
        } => ExitCode::from(berth_engine::health::helper::main(
            &bundle,
            &id,
            pid,
            std::time::Duration::from_millis(timeout_ms),
            &cmd,
        ) as u8),
        Command::SourceFetch => {
            init_tracing();
            report(source_fetch())
        }
        Command::Inspect {
            target,
            api,
            output,
        } => report(
            api.client()
                .and_then(|c| cli::inspect::run(&c, &target, output == "yaml")),
        ),
        Command::Events {
            since,
            filters,
            follow,
            api,
            output,
        } => report(api.client().and_then(|c| {
            cli::events::run(
                &c,
                &cli::events::EventsArgs {
                    since,
                    filters,
                    follow,
                    json: output == "json",
                },
            )
        })),
        Command::Ls { what, api, output } => report(
            api.client()
                .and_then(|c| cli::ls::run(&c, &what, output == "json")),
        ),
        Command::Status { api, output } => report(
            api.client()
                .and_then(|c| cli::status::run(&c, output == "json")),
        ),
        Command::Source { api, output } => report(
            api.client()
                .and_then(|c| cli::source::run(&c, output == "json")),
        ),
        Command::Validate {
            dirs,
            output,
            config,
        } => {
            let policy = match cli::validate::policy(config) {
                Ok(p) => p,
                Err(e) => return report(Err(e)),
            };
            ExitCode::from(match output.as_str() {
                "json" => cli::validate::run_json(&dirs, &policy),
                _ => cli::validate::run(&dirs, &policy),
            } as u8)
        }
        Command::Schema => {
            cli::schema::run();
            ExitCode::SUCCESS
        }
        Command::Plan {
            dir,
            api,
            output,
            detailed_exitcode,
        } => {
            let client = match api.client() {
                Ok(c) => c,
                Err(e) => return report(Err(e)),
            };
            let args = cli::plan::PlanArgs {
                dir,
                client,
                json: output == "json",
                detailed_exitcode,
            };
            match cli::plan::run(&args) {
                Ok(code) => ExitCode::from(code as u8),
                Err(e) => report(Err(e)),
            }
        }
        Command::Ps { api, output } => report(
            api.client()
                .and_then(|c| cli::ps::run(&c, output == "json")),
        ),
        Command::Images { api, output } => report(
            api.client()
                .and_then(|c| cli::images::run(&c, output == "json")),
        ),
        Command::Stats { names, api, output } => report(
            api.client()
                .and_then(|c| cli::stats::run(&c, &names, output == "json")),
        ),
        Command::Logs {
            name,
            follow,
            tail,
            timestamps,
            api,
        } => report(api.client().and_then(|c| {
            cli::logs::run(
                &c,
                &cli::logs::LogsArgs {
                    name,
                    follow,
                    tail,
                    timestamps,
                },
            )
        })),
        Command::Agent(flags) => {
            init_tracing();
            let cfg = match config::AgentConfig::load(&flags) {
                Ok(c) => c,
                Err(e) => return report(Err(e)),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build();
            match rt {
                Ok(rt) => report(rt.block_on(agent::run(cfg))),
                Err(e) => report(Err(anyhow::anyhow!("start the async runtime: {e}"))),
            }
        }
    }
}

/// `berth source-fetch`: the agent's fetch process.
fn source_fetch() -> anyhow::Result<()> {
    use std::io::Read;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| anyhow::anyhow!("read the fetch request: {e}"))?;
    let req: source::fetch::FetchRequest = serde_json::from_slice(&input)
        .map_err(|e| anyhow::anyhow!("parse the fetch request: {e}"))?;
    let outcome = source::fetch::run(&req);
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}
