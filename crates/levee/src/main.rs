//! The `levee` binary: the command line (`run`, `check`, `demo`, `slo`,
//! `rollout` (`rollout_cli`), `incident` (`incident_cli`), `load`
//! (`load_cli`), `chaos run`
//! (`chaos_cli`), `backup`, `restore`, `completions`), logging set-up and
//! the wiring of gateway, admin API, signals and file watching. Logic
//! worth testing lives in the library crates.

mod admin_client;
mod chaos_cli;
mod demo;
mod handover;
mod incident_cli;
mod jobs_cli;
mod load_cli;
mod rollout_cli;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use levee_proxy::Gateway;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Levee: a single-binary resilience gateway.
#[derive(Parser, Debug)]
#[command(name = "levee", version, about, propagate_version = true)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How `levee check` prints its result.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    /// `file:line:col: path: message` lines on stderr (OK line on stdout).
    Text,
    /// One JSON object on stdout: `valid` and the `diagnostics`, shaped as
    /// the admin API's reload answer, for editors and CI.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway from a config file (TOML or YAML), or several
    /// layered ones.
    Run {
        /// The config file [default: levee.toml, levee.yaml or levee.yml in
        /// the working directory, else $LEVEE_CONFIG]. Repeat to layer
        /// files, each merged over those before it (`-c base.toml -c
        /// prod.toml`); reloads re-read them all.
        #[arg(short, long, action = clap::ArgAction::Append)]
        config: Vec<PathBuf>,
        /// Replace the Levee running with this config without refusing a
        /// connection: take its listening sockets over its handover socket,
        /// serve, then let it drain and exit. Exits 1, leaving it serving,
        /// if anything fails first (or if none runs).
        #[arg(long)]
        takeover: bool,
    },
    /// Validate a config file (or layered files) and print every
    /// diagnostic; exit 1 on any error.
    Check {
        /// The config file [default: levee.toml, levee.yaml or levee.yml in
        /// the working directory, else $LEVEE_CONFIG]. Repeat to layer
        /// files, each merged over those before it.
        #[arg(short, long, action = clap::ArgAction::Append)]
        config: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// On a valid config, also print every value with the file, line
        /// and column that set it (`file:line:col: path = value`; secrets
        /// redacted).
        #[arg(long)]
        explain: bool,
    },
    /// Print a shell completion script, e.g. `levee completions bash >
    /// /etc/bash_completion.d/levee`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run the whole product on embedded defaults with demo upstreams in process.
    Demo {
        /// Gateway address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Admin API address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_listen: std::net::SocketAddr,
        /// Send no background traffic (the demo sends a few requests a
        /// second by default).
        #[arg(long)]
        no_traffic: bool,
        /// Keep SLO history, alerts and incidents in this SQLite file
        /// instead of memory.
        #[arg(long, value_name = "FILE")]
        store: Option<PathBuf>,
    },
    /// Watch and steer rollouts through the admin API: status, pause,
    /// resume, promote, abort, undo. Exits 1 when the command is refused,
    /// 3 when the admin API cannot be reached or refuses the token.
    Rollout(rollout_cli::Args),
    /// Work incidents through the admin API: list, show, ack, note,
    /// resolve (signed with --by, default $USER). Exits 1 when the action
    /// is refused (already acknowledged or resolved, no such incident), 2
    /// on a usage error, 3 when the admin API cannot be reached or refuses
    /// the token.
    Incident(incident_cli::Args),
    /// Async routes' queues and dead letters through the admin API: list
    /// queues or a route's jobs, show a job, retry dead jobs, purge a
    /// route's dead letters. Exits 1 when refused (no such route or job, a
    /// job not dead), 2 on a usage error, 3 when the admin API cannot be
    /// reached or refuses the token.
    Jobs(jobs_cli::Args),
    /// Send load at a fixed or ramping rate (or from virtual users) and
    /// judge k6-style thresholds; latency counts from each request's
    /// scheduled send time. Exits 99 when a threshold fails, 2 on a usage
    /// error, 1 when the run cannot start.
    Load(load_cli::Args),
    /// Chaos experiments: `levee chaos run FILE` checks a hypothesis (SLOs,
    /// probes), sets runtime faults on a timeline through the admin API
    /// within a chaos budget, and runs rollbacks. Exits 0 held, 1
    /// deviated, 3 aborted, 4 failed to run.
    Chaos(chaos_cli::Args),
    /// SLO tooling: Prometheus rules, OpenSLO import.
    Slo {
        #[command(subcommand)]
        command: SloCommand,
    },
    /// Dashboards for other tools: `levee dashboards grafana` writes
    /// Grafana dashboards (SLOs from `levee slo rules`' recordings,
    /// routes with latency heatmaps, clusters) as JSON files.
    Dashboards {
        #[command(subcommand)]
        command: DashboardsCommand,
    },
    /// Copy the state store (SLO history, alerts, incidents) to FILE while
    /// Levee runs, with a manifest of row counts and a checksum; a
    /// PostgreSQL store is exported into the same kind of SQLite file.
    Backup {
        /// The config file naming the store.
        #[arg(short, long)]
        config: PathBuf,
        /// Where to write the backup; must not exist.
        file: PathBuf,
    },
    /// Check a backup (`--verify`: restore into a scratch store and compare
    /// integrity, counts and checksum), or restore it over the store named
    /// by the config (SQLite or PostgreSQL) while Levee is stopped.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Only verify: restore into a scratch store, check, exit 1 on any
        /// mismatch.
        #[arg(long)]
        verify: bool,
        /// The config file naming the store to restore into.
        #[arg(short, long, required_unless_present = "verify")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum DashboardsCommand {
    /// Write levee-slos.json, levee-routes.json and levee-clusters.json
    /// (Grafana dashboard JSON models with a Prometheus datasource
    /// variable) into a directory; exit 1 on a config or write error.
    Grafana {
        /// The config file (its capacity thresholds colour the utilisation
        /// panels).
        #[arg(short, long)]
        config: PathBuf,
        /// The directory to write into (created if missing).
        #[arg(short, long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum SloCommand {
    /// Print Prometheus recording and alerting rules for the config's SLOs
    /// (Sloth-compatible names and windows) for fleet-wide evaluation.
    Rules {
        /// The config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Convert OpenSLO (v1, v1alpha) and Sloth (prometheus/v1,
    /// PrometheusServiceLevel) documents into Levee's `[[slos]]` TOML; exit 1
    /// listing what cannot be mapped.
    Import {
        /// The YAML file (several documents allowed).
        file: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Map an SLO, SLI or service measured elsewhere to Levee traffic:
        /// `NAME=route:checkout` (or tier:, tenant:, cluster:), optionally
        /// `,latency:300ms` or `,availability`. Repeatable.
        #[arg(long = "map", value_name = "NAME=TARGET")]
        map: Vec<String>,
        /// A mapping file (TOML or YAML `[[map]]` tables).
        #[arg(long, value_name = "FILE")]
        mapping: Option<PathBuf>,
        /// A Levee config whose route names map SLOs and services of the
        /// same name.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Fail (exit 1) on anything that cannot carry over, instead of
        /// writing it as a note.
        #[arg(long)]
        strict: bool,
    },
    /// Write the config's SLOs as OpenSLO v1 (one `kind: SLO` document
    /// each, measured by the `Levee` metric source), which `slo import`
    /// reads back into the same SLOs.
    Export {
        /// The config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only for a person at a terminal, never in files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            format,
            explain,
        } => match config_files(config) {
            Ok(files) => check(&files, format, explain),
            Err(code) => code,
        },
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "levee", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Run { config, takeover } => {
            let files = match config_files(config) {
                Ok(files) => files,
                Err(code) => return code,
            };
            init_logging(cli.log_format, &cli.log_level);
            let loaded = match levee_config::load_files(&files) {
                Ok(c) => c,
                Err(diags) => return print_diagnostics(&diags),
            };
            report(
                runtime(loaded.runtime.worker_threads)
                    .and_then(|rt| rt.block_on(run(loaded, files, None, takeover))),
            )
        }
        Command::Demo {
            listen,
            admin_listen,
            no_traffic,
            store,
        } => {
            init_logging(cli.log_format, &cli.log_level);
            let options = demo::Options {
                listen,
                admin: admin_listen,
                traffic: !no_traffic,
                store,
            };
            report(runtime(None).and_then(|rt| rt.block_on(demo::run(options))))
        }
        Command::Dashboards {
            command: DashboardsCommand::Grafana { config, out },
        } => match levee_config::load_file(&config) {
            Ok(c) => write_dashboards(&c, &out),
            Err(diags) => print_diagnostics(&diags),
        },
        Command::Slo {
            command: SloCommand::Rules { config, output },
        } => match levee_config::load_file(&config) {
            Ok(c) => {
                for note in levee_control::rules::notes(&c) {
                    eprintln!("note: {note}");
                }
                write_output(output.as_deref(), &levee_control::rules::render(&c))
            }
            Err(diags) => print_diagnostics(&diags),
        },
        Command::Slo {
            command:
                SloCommand::Import {
                    file,
                    output,
                    map,
                    mapping,
                    config,
                    strict,
                },
        } => {
            let mut opts = levee_config::openslo::Options {
                strict,
                ..Default::default()
            };
            for flag in &map {
                if let Err(e) = opts.mapping.add_flag(flag) {
                    eprintln!("error: --map {e}");
                    return ExitCode::FAILURE;
                }
            }
            if let Some(path) = &mapping {
                if let Err(diags) = opts.mapping.add_file(path) {
                    return print_diagnostics(&diags);
                }
            }
            if let Some(path) = &config {
                match levee_config::load_file(path) {
                    Ok(c) => opts
                        .mapping
                        .add_routes(c.routes.iter().map(|r| r.name.clone())),
                    Err(diags) => return print_diagnostics(&diags),
                }
            }
            match levee_config::openslo::import_file(&file, &opts) {
                Ok(imported) => write_output(output.as_deref(), &imported.toml),
                Err(diags) => print_diagnostics(&diags),
            }
        }
        Command::Slo {
            command: SloCommand::Export { config, output },
        } => match levee_config::load_file(&config) {
            Ok(c) => {
                let yaml = levee_config::openslo::export(&c, &config.display().to_string());
                write_output(output.as_deref(), &yaml)
            }
            Err(diags) => print_diagnostics(&diags),
        },
        Command::Rollout(args) => rollout_cli::main(args),
        Command::Incident(args) => incident_cli::main(args),
        Command::Jobs(args) => jobs_cli::main(args),
        Command::Load(args) => load_cli::main(args),
        Command::Chaos(args) => chaos_cli::main(args),
        Command::Backup { config, file } => backup(&config, &file),
        Command::Restore {
            file,
            verify,
            config,
        } => restore(&file, verify, config.as_deref()),
    }
}

/// The config files named with `-c` (layers, in order), or the one
/// discovery finds; when there is none, says what was looked for and gives
/// the exit code.
fn config_files(named: Vec<PathBuf>) -> Result<Vec<PathBuf>, ExitCode> {
    if !named.is_empty() {
        return Ok(named);
    }
    let env = std::env::var_os(levee_config::CONFIG_ENV);
    match levee_config::discover(std::path::Path::new(""), env) {
        Ok(path) => Ok(vec![path]),
        Err(e) => {
            eprintln!("error: {e}\n  help: {}", e.help());
            Err(ExitCode::FAILURE)
        }
    }
}

/// The files of a layered config as `levee check` names them:
/// `base.toml + prod.toml` (one file: its name).
fn files_label(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Writes `text` to `path`, or to standard output.
fn write_output(path: Option<&std::path::Path>, text: &str) -> ExitCode {
    match path {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(p) => match std::fs::write(p, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", p.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// `levee dashboards grafana`: one JSON file per dashboard in `dir`,
/// each path printed as it is written.
fn write_dashboards(config: &levee_config::Config, dir: &std::path::Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for d in levee_control::grafana::dashboards(config) {
        let path = dir.join(d.file_name);
        let text = match serde_json::to_string_pretty(&d.model) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("error: {}: {e}", d.title);
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{} ({})", path.display(), d.title);
    }
    ExitCode::SUCCESS
}

/// The store the config at `config` names.
enum StoreTarget {
    /// The SQLite file.
    Sqlite(PathBuf),
    /// The PostgreSQL database, connected (its schema checked).
    Postgres(Box<levee_store::PostgresStore>),
}

/// The store named by the config at `config`, or why there is none; the
/// error names the config file and what is wrong (never the database's
/// password).
fn store_target(config: &std::path::Path) -> Result<StoreTarget, String> {
    let loaded = levee_config::load_file(config).map_err(|d| d.to_string())?;
    if loaded.store.backend == levee_config::StoreBackend::Postgres {
        return levee_control::store::open_postgres(&loaded)
            .map(|s| StoreTarget::Postgres(Box::new(s)))
            .map_err(|e| format!("{}: {e}", config.display()));
    }
    levee_control::store::store_path(&loaded, Some(config))
        .map(StoreTarget::Sqlite)
        .ok_or_else(|| {
            format!(
                "{}: store.path is \":memory:\": there is no store file",
                config.display()
            )
        })
}

fn print_rows(rows: &[(String, u64)]) {
    for (table, n) in rows {
        println!("  {table}: {n} rows");
    }
}

fn backup(config: &std::path::Path, file: &std::path::Path) -> ExitCode {
    let (from, result) = match store_target(config) {
        Ok(StoreTarget::Sqlite(db)) => (
            db.display().to_string(),
            levee_store::backup(&db, file).map_err(|e| e.to_string()),
        ),
        Ok(StoreTarget::Postgres(mut store)) => {
            let location = store.location().to_path_buf();
            let result = levee_store::backup_postgres(&mut store, file)
                .map_err(|e| in_config(config, &location, e));
            (location.display().to_string(), result)
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(report) => {
            println!(
                "backed up {from} to {} ({} bytes, checksum {:016x})",
                report.path.display(),
                report.bytes,
                report.checksum
            );
            print_rows(&report.rows);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A store error, prefixed with the config file when it is about the
/// database that config names (`location`); one about a file names the
/// file already.
fn in_config(
    config: &std::path::Path,
    location: &std::path::Path,
    e: levee_store::StoreError,
) -> String {
    if e.path() == location {
        format!("{}: {e}", config.display())
    } else {
        e.to_string()
    }
}

fn restore(file: &std::path::Path, verify: bool, config: Option<&std::path::Path>) -> ExitCode {
    if verify {
        return match levee_store::verify(file) {
            Ok(report) if report.is_ok() => {
                println!(
                    "{}: OK (restored into a scratch store: integrity, schema, counts and checksum match)",
                    file.display()
                );
                print_rows(&report.rows);
                ExitCode::SUCCESS
            }
            Ok(report) => {
                eprintln!("{}: verification FAILED", file.display());
                for p in &report.problems {
                    eprintln!("  {p}");
                }
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(config) = config else {
        eprintln!("error: restore needs -c CONFIG (or --verify)");
        return ExitCode::FAILURE;
    };
    let result = match store_target(config) {
        Ok(StoreTarget::Sqlite(db)) => levee_store::restore(file, &db)
            .map_err(|e| e.to_string())
            .map(|report| {
                println!(
                    "restored {} into {} ({} bytes{})",
                    file.display(),
                    report.path.display(),
                    report.bytes,
                    if report.replaced {
                        ", replacing the old store"
                    } else {
                        ""
                    }
                );
                print_rows(&report.verify.rows);
            }),
        Ok(StoreTarget::Postgres(mut store)) => {
            let location = store.location().to_path_buf();
            levee_store::restore_postgres(file, &mut store)
                .map(|report| {
                    println!(
                        "restored {} into {} (checksum {:016x}{})",
                        file.display(),
                        report.location.display(),
                        report.checksum,
                        if report.replaced {
                            ", replacing the old contents"
                        } else {
                            ""
                        }
                    );
                    print_rows(&report.rows);
                })
                .map_err(|e| in_config(config, &location, e))
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    // One worker means one thread: the single-threaded scheduler does the
    // same work without cross-thread synchronisation (like one NGINX worker).
    let mut b = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all().thread_name("levee-worker");
    if let Some(n) = workers.filter(|n| *n > 1) {
        b.worker_threads(n);
    }
    b.build().context("starting the async runtime")
}

fn check(files: &[PathBuf], format: CheckFormat, explain: bool) -> ExitCode {
    let loaded = if explain {
        levee_config::explain_files(files)
    } else {
        levee_config::load_files(files).map(|config| levee_config::Explained {
            config,
            values: Vec::new(),
        })
    };
    if format == CheckFormat::Json {
        return check_json(files, &loaded, explain);
    }
    match loaded {
        Ok(explained) => {
            for value in &explained.values {
                println!("{value}");
            }
            let c = &explained.config;
            println!(
                "{}: OK ({} listener{}, {} route{}, {} cluster{})",
                files_label(files),
                c.listeners.len(),
                plural(c.listeners.len()),
                c.routes.len(),
                plural(c.routes.len()),
                c.clusters.len(),
                plural(c.clusters.len()),
            );
            ExitCode::SUCCESS
        }
        Err(diags) => print_diagnostics(&diags),
    }
}

/// Diagnostics as `levee check` prints them (one `file:line:col: path:
/// message` each, `help:` lines, a count) on standard error; exit 1.
fn print_diagnostics(diags: &levee_config::Diagnostics) -> ExitCode {
    eprintln!("{diags}");
    ExitCode::FAILURE
}

/// `levee check --format json`: the shape of the admin API's reload answer
/// (`diagnostics` as `{file, line, col, path, message, help}` and their
/// `rendered` text), with `valid` and, when valid, what the config defines
/// and (`--explain`) each value's origin as `{path, value, file, line,
/// col}`. `file` names the files as the text does; `files` lists them.
fn check_json(
    files: &[PathBuf],
    loaded: &Result<levee_config::Explained, levee_config::Diagnostics>,
    explain: bool,
) -> ExitCode {
    let file = files_label(files);
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let (mut body, code) = match loaded {
        Ok(explained) => (
            serde_json::json!({
                "file": file,
                "files": names,
                "valid": true,
                "summary": {
                    "listeners": explained.config.listeners.len(),
                    "routes": explained.config.routes.len(),
                    "clusters": explained.config.clusters.len(),
                },
                "diagnostics": [],
                "rendered": [],
            }),
            ExitCode::SUCCESS,
        ),
        Err(diags) => (
            serde_json::json!({
                "file": file,
                "files": names,
                "valid": false,
                "diagnostics": diags.0,
                "rendered": diags.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            ExitCode::FAILURE,
        ),
    };
    if let (true, Ok(explained)) = (explain, loaded) {
        body["values"] = serde_json::json!(explained.values);
    }
    println!("{body}");
    code
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Runs a gateway and its admin API until SIGTERM or SIGINT, reloading on
/// SIGHUP, or until a new process takes over (`takeover` makes this one
/// that new process). `files` are the config's layers in order (empty for
/// a config built in memory); reloads re-read them. `ready` is told the
/// bound addresses once serving.
pub(crate) async fn run(
    config: levee_config::Config,
    files: Vec<PathBuf>,
    ready: Option<tokio::sync::oneshot::Sender<(Gateway, std::net::SocketAddr)>>,
    takeover: bool,
) -> anyhow::Result<()> {
    use std::os::fd::AsFd as _;
    // Before anything is announced: a signal sent as soon as the
    // "listening" lines appear must find its handler.
    let mut signals = Signals::new()?;
    let admin_addr = config.admin.listen;
    let keda_addr = config.admin.keda_listen;
    let token = config.admin.token.clone();
    let drain_timeout = config.runtime.drain_timeout;
    let watch = config.runtime.watch_config && !files.is_empty();
    let control_path = levee_proxy::handover::socket_path(&config, &files);

    // A successor takes the running gateway's sockets before building its own.
    let mut inherited = None;
    if takeover {
        let Some(control_path) = &control_path else {
            anyhow::bail!(
                "--takeover needs a handover socket, but runtime.handover_socket is \"off\""
            );
        };
        inherited = Some(handover::take_over(control_path).await?);
    }
    let (mut options, inherited_admin, pending) = match inherited {
        Some(i) => (i.options, i.admin, Some(i.pending)),
        None => (levee_control::StartOptions::default(), None, None),
    };
    options.config_overlays = files.get(1..).unwrap_or_default().to_vec();
    let (gateway, control) = levee_control::start(
        config,
        files.first().cloned(),
        std::sync::Arc::new(levee_core::metrics::Registry::new()),
        options,
    )
    .await
    .context("starting the gateway")?;
    let admin_listener =
        match inherited_admin.filter(|a| a.configured == admin_addr || a.bound == admin_addr) {
            Some(a) => {
                a.socket.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(a.socket)?
            }
            None => tokio::net::TcpListener::bind(admin_addr)
                .await
                .with_context(|| format!("binding the admin API on {admin_addr}"))?,
        };
    let admin_fd = admin_listener.as_fd().try_clone_to_owned()?;
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    // KEDA's external scaler, when configured. A successor binds it once
    // its predecessor lets it go (at the hand-over), so it retries a while.
    let (keda_stop_tx, keda_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = keda_addr {
        let listener = bind_retrying(addr, Duration::from_secs(30))
            .await
            .with_context(|| format!("binding the KEDA external scaler on {addr}"))?;
        tracing::info!(address = %listener.local_addr()?, "KEDA external scaler listening");
        levee_admin::keda::serve_keda(gateway.clone(), control.clone(), listener, async move {
            let _ = keda_stop_rx.await;
        });
    }
    let (admin_bound, admin_task) = levee_admin::serve_on(
        gateway.clone(),
        control,
        admin_listener,
        token,
        async move {
            let _ = admin_stop_rx.await;
        },
    )
    .with_context(|| format!("serving the admin API on {admin_addr}"))?;
    for l in gateway.listeners() {
        tracing::info!(listener = %l.name, address = %l.address, tls = l.tls, "listening");
    }
    tracing::info!(address = %admin_bound, "admin API listening");
    if watch {
        if let Err(e) = gateway.watch_config_file() {
            tracing::warn!(error = %e, "not watching the config file");
        }
    }
    if let Some(ready) = ready {
        let _ = ready.send((gateway.clone(), admin_bound));
    }
    // Serving: the predecessor may stop now; this process takes over the
    // control socket once it has drained.
    let mut control = match (pending, control_path) {
        (Some(pending), path) => {
            let predecessor_done = pending.ready(drain_timeout + Duration::from_secs(30));
            handover::Control::inherit(path, admin_fd, predecessor_done)
        }
        (None, Some(path)) => {
            let explicit = matches!(
                gateway.config().runtime.handover_socket,
                levee_config::HandoverSocket::Path(_)
            );
            handover::Control::bind(path, explicit, admin_fd)?
        }
        (None, None) => handover::Control::none(admin_fd),
    };

    let successor = wait_for_shutdown(&gateway, &mut control, &mut signals).await?;
    let mut admin_stop = Some(admin_stop_tx);
    match &successor {
        Some(s) => {
            // The successor serves the admin API on the same socket now.
            tracing::info!(successor = s.pid, timeout = ?drain_timeout, "handed over to the new process; draining");
            admin_stop.take().map(|stop| stop.send(()));
            let _ = keda_stop_tx.send(());
        }
        None => tracing::info!(timeout = ?drain_timeout, "draining"),
    }
    let left = gateway.shutdown(drain_timeout).await;
    if left > 0 {
        tracing::warn!(connections = left, "drain timeout passed; closing the rest");
    } else {
        tracing::info!("drained");
    }
    if let Some(s) = successor {
        // The last SLO events are written: the successor may load them.
        s.done();
        control.handed_over();
    }
    admin_stop.take().map(|stop| stop.send(()));
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    Ok(())
}

/// Binds `addr`, retrying while it is in use (a predecessor about to let
/// it go) for up to `patience`.
async fn bind_retrying(
    addr: std::net::SocketAddr,
    patience: Duration,
) -> std::io::Result<tokio::net::TcpListener> {
    let deadline = levee_core::time::now() + patience;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && levee_core::time::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// The signals `levee run` answers, registered when it starts.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self)
    }
}

/// Waits for SIGTERM or SIGINT (`None`), reloading on SIGHUP, or for a new
/// process that has taken the sockets over and serves (`Some`).
#[cfg(unix)]
async fn wait_for_shutdown(
    gateway: &Gateway,
    control: &mut handover::Control,
    signals: &mut Signals,
) -> anyhow::Result<Option<levee_proxy::handover::Successor>> {
    let Signals { term, int, hup } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); return Ok(None) }
            _ = int.recv() => { tracing::info!("SIGINT received"); return Ok(None) }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received; reloading");
                let _ = gateway.reload_from_file().await;
            }
            successor = control.successor(gateway) => return Ok(Some(successor)),
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_shutdown(
    _gateway: &Gateway,
    _control: &mut handover::Control,
    _signals: &mut Signals,
) -> anyhow::Result<Option<levee_proxy::handover::Successor>> {
    tokio::signal::ctrl_c().await.context("Ctrl-C handler")?;
    Ok(None)
}
