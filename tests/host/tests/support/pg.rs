//! Real PostgreSQL servers for black-box tests: `initdb` and `pg_ctl` in a temp dir on a free
//! port (as the `postgres` user when the tests run as root, since PostgreSQL refuses root).
//!
//! The suite also runs whole against PostgreSQL: `scripts/test` starts one server and sets
//! `EDGE_TEST_POSTGRES` to its `127.0.0.1:port`. Each Redis server a test starts then gets a
//! database of its own, and every edge pointed at that Redis uses it, each instance with its
//! own state dir, as on separate machines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{free_port, TempDir};

/// The role edges connect as in [`PostgresServer`]s, with a password that needs encoding.
pub const ROLE: &str = "edge";
pub const ROLE_PASSWORD: &str = "p@ss w:rd/#1%";

pub struct PostgresServer {
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
    running: bool,
}

fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !path.is_empty() {
            let path = std::fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(path));
            return path.parent().expect("initdb has a directory").to_path_buf();
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL must be installed (.ci/run installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PostgresServer {
    /// A new cluster with the role [`ROLE`] (password auth over TCP, trust on its socket).
    pub fn start() -> Self {
        let dir = TempDir::new();
        let mut server = Self {
            port: 0,
            dir,
            bin: bin_dir(),
            running: false,
        };
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&server.dir.0)
                .status()
                .expect("chown");
            assert!(status.success(), "chown the PostgreSQL dir to postgres");
        }
        let out = server.run(
            "initdb",
            &[
                "-D",
                &server.data().display().to_string(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        assert!(out.status.success(), "initdb: {}", describe(&out));
        for _ in 0..5 {
            server.port = free_port();
            if server.try_start() {
                server
                    .admin()
                    .batch_execute(&format!(
                        "CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{}'",
                        ROLE_PASSWORD.replace('\'', "''")
                    ))
                    .expect("create role");
                return server;
            }
        }
        panic!("PostgreSQL did not start on any free port");
    }

    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    fn socket_dir(&self) -> &Path {
        &self.dir.0
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.args(args).output().expect("PostgreSQL's programs")
    }

    fn try_start(&mut self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400",
            self.port,
            self.socket_dir().display()
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.dir.0.join("log").display().to_string(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        self.running = out.status.success();
        self.running
    }

    /// Starts the stopped server again, on its port, with its data.
    pub fn start_again(&mut self) {
        assert!(self.try_start(), "PostgreSQL did not start again");
    }

    /// A fast shutdown: connections are closed, new ones refused.
    pub fn stop(&mut self) {
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(out.status.success(), "pg_ctl stop: {}", describe(&out));
        self.running = false;
    }

    /// `postgres://127.0.0.1:port`, the `database_address` of an edge.
    pub fn address(&self) -> String {
        format!("postgres://127.0.0.1:{}", self.port)
    }

    /// The superuser, over the server's socket.
    pub fn admin(&self) -> postgres::Client {
        self.client("postgres")
    }

    pub fn client(&self, database: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host={} port={} user=postgres dbname={database}",
                self.socket_dir().display(),
                self.port
            ),
            postgres::NoTls,
        )
        .expect("connect to the test PostgreSQL")
    }

    /// A new, empty database owned by [`ROLE`].
    pub fn create_database(&self, name: &str) {
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {ROLE}"))
            .expect("create database");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D",
                    &self.data().display().to_string(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}

fn describe(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The suite's shared server (`EDGE_TEST_POSTGRES`, trust auth for the `postgres` role).
pub fn suite_server() -> Option<&'static str> {
    static SERVER: OnceLock<Option<String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            std::env::var("EDGE_TEST_POSTGRES")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .as_deref()
}

/// Whether the suite runs against PostgreSQL (tests of the SQLite file itself step aside).
pub fn on_postgres() -> bool {
    suite_server().is_some()
}

fn databases() -> &'static Mutex<HashMap<u16, String>> {
    static DATABASES: OnceLock<Mutex<HashMap<u16, String>>> = OnceLock::new();
    DATABASES.get_or_init(Default::default)
}

/// Gives the Redis server on `port` a new database of the suite's server, for the edges that
/// use that Redis.
pub fn attach_database(redis_port: u16) {
    let Some(server) = suite_server() else {
        return;
    };
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("edge_{}_{n}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let made = postgres::Client::connect(
            &format!("postgresql://postgres@{server}/postgres"),
            postgres::NoTls,
        )
        .and_then(|mut c| c.batch_execute(&format!("CREATE DATABASE {name}")));
        match made {
            Ok(()) => break,
            // Concurrent CREATE DATABASE calls can collide on the template's lock.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("create database {name}: {e}"),
        }
    }
    databases().lock().unwrap().insert(redis_port, name);
}

/// The variables that point an edge using the Redis at `redis_address` at its database.
pub fn database_vars(redis_address: &str) -> Option<Vec<(&'static str, String)>> {
    let server = suite_server()?;
    let port: u16 = redis_address
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()?;
    let name = databases().lock().unwrap().get(&port)?.clone();
    Some(vec![
        ("database_address", format!("postgres://{server}")),
        ("database_name", name),
        ("database_user", "postgres".into()),
        ("database_tls", "disable".into()),
    ])
}
