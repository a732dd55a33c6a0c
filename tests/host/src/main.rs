//! `edge-host up`: run alchemix-edge like `spin up`, on machines without Spin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use edge_host::manifest::Manifest;
use edge_host::reuse::Span;
use edge_host::{App, AppOptions, Reuse};

#[derive(Parser)]
#[command(
    name = "edge-host",
    version,
    about = "Run a Spin HTTP component without Spin"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application, like `spin up`.
    Up {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Folder for the default SQLite database (default: `.spin` beside the manifest).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Spin runtime configuration (default: `runtime-config.toml` beside the manifest, if present).
        #[arg(long)]
        runtime_config_file: Option<PathBuf>,
        /// The application manifest.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
        /// Run the component's build command first.
        #[arg(long)]
        build: bool,
        /// Set an application variable (`name=value`), overriding the environment.
        #[arg(long = "variable", value_parser = parse_variable)]
        variables: Vec<(String, String)>,
        /// Requests one instance of a WASI 0.3 component serves before it is dropped: a number,
        /// or a range like `1..8` from which each new instance draws.
        #[arg(long, default_value = "128", value_parser = Span::parse_count)]
        max_instance_reuse_count: Span<usize>,
        /// Requests one instance of a WASI 0.3 component serves at once (a number or a range).
        #[arg(long, default_value = "16", value_parser = Span::parse_count)]
        max_instance_concurrent_reuse_count: Span<usize>,
        /// How long an idle instance of a WASI 0.3 component is kept (`1s`, `500ms`, or a range
        /// like `500ms..2s`).
        #[arg(long, default_value = "1s", value_parser = Span::parse_duration)]
        idle_instance_timeout: Span<std::time::Duration>,
    },
}

fn parse_variable(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let Command::Up {
        listen,
        state_dir,
        runtime_config_file,
        manifest,
        build,
        variables,
        max_instance_reuse_count,
        max_instance_concurrent_reuse_count,
        idle_instance_timeout,
    } = Cli::parse().command;
    if build {
        run_build(&manifest)?;
    }
    let runtime_config = runtime_config_file.or_else(|| {
        let beside = manifest
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("runtime-config.toml");
        beside.exists().then_some(beside)
    });
    let opts = AppOptions {
        manifest,
        runtime_config,
        state_dir,
        variables,
        reuse: Reuse {
            max_count: max_instance_reuse_count,
            max_concurrent: max_instance_concurrent_reuse_count,
            idle_timeout: idle_instance_timeout,
        },
    };
    sqlite_memory_statistics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Arc::new(App::load(&opts)?);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        println!("Serving http://{}", listener.local_addr()?);
        app.serve(listener, shutdown_signal()).await?;
        println!("Shutting down");
        Ok(())
    })
}

/// SQLite keeps global memory statistics behind one process-wide mutex, and Spin leaves them on,
/// so edge-host does too. `EDGE_HOST_SQLITE_MEMSTATUS=0` turns them off: not Spin's behaviour,
/// a what-if the benchmark measures (that mutex is contended by every concurrent statement).
fn sqlite_memory_statistics() {
    if std::env::var("EDGE_HOST_SQLITE_MEMSTATUS").as_deref() == Ok("0") {
        let off: std::os::raw::c_int = 0;
        // SAFETY: called before any connection exists, so before SQLite initialises itself; the
        // option takes one int argument, as passed.
        let rc =
            unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, off) };
        if rc != rusqlite::ffi::SQLITE_OK {
            eprintln!("edge-host: cannot turn SQLite memory statistics off (code {rc})");
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn run_build(manifest_path: &std::path::Path) -> Result<()> {
    let manifest = Manifest::load(manifest_path)?;
    let (id, component, _) = manifest.http_component()?;
    let Some(build) = &component.build else {
        bail!("component {id} has no [component.{id}.build] command");
    };
    // The middleware in front of it is built first, as `spin build` builds every component.
    let mut builds = Vec::new();
    for entry in manifest.middleware()? {
        if let Some(mw) = &entry.component {
            if let Some(decl) = manifest.component.get(mw).and_then(|c| c.build.as_ref()) {
                builds.push((mw.as_str(), decl));
            }
        }
    }
    builds.push((id, build));
    let app_dir = manifest_path.parent().unwrap_or(std::path::Path::new("."));
    for (id, build) in builds {
        let workdir = app_dir.join(build.workdir.as_deref().unwrap_or("."));
        println!("Building component {id} with `{}`", build.command);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&build.command)
            .current_dir(workdir)
            .status()
            .context("cannot run the build command")?;
        if !status.success() {
            bail!("build command for {id} failed ({status})");
        }
    }
    Ok(())
}
