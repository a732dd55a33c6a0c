//! Real processes for black-box tests: redis-server on free ports, edge-host serving the
//! component built from this checkout, and a small HTTP client.

#![allow(dead_code)]

pub mod pg;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const PASSWORD: &str = "Str0ng!Passw0rd";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The manifest the suite runs against: `EDGE_TEST_MANIFEST` (`spin-wasip2.toml` for the WASI
/// 0.2 build), else `spin.toml` (the WASI 0.3 chain). `scripts/test` runs the suite on both.
pub fn manifest() -> PathBuf {
    root().join(std::env::var("EDGE_TEST_MANIFEST").unwrap_or_else(|_| "spin.toml".into()))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    /// More `redis-server` options, like `--maxmemory 64mb`.
    options: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// A server that refuses every command until `AUTH password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_string()), &[])
    }

    pub fn start_with_options(options: &[&str]) -> Self {
        Self::start_with(None, options)
    }

    fn start_with(password: Option<String>, options: &[&str]) -> Self {
        // Another process may take a free port before redis-server binds it: pick again.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                password: password.clone(),
                options: options.iter().map(|o| o.to_string()).collect(),
                child: None,
            };
            if server.try_restart() {
                pg::attach_database(server.port);
                return server;
            }
        }
        panic!("redis-server did not start on any free port");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty: it keeps nothing on disk.
    pub fn restart(&mut self) {
        assert!(
            self.try_restart(),
            "redis-server on port {} did not start",
            self.port
        );
    }

    fn try_restart(&mut self) -> bool {
        self.kill();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        cmd.args(&self.options);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            // The answer must come from our process, not one that already held the port.
            let info = self
                .client()
                .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c));
            if let Ok(info) = info {
                if info.contains(&format!("process_id:{pid}\r")) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the server without closing its connections (SIGSTOP), like a hung host or a
    /// network that drops packets: connections open, and nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client(&self) -> redis::RedisResult<redis::Connection> {
        let mut conn = redis::Client::open(self.url())?.get_connection()?;
        if let Some(password) = &self.password {
            redis::cmd("AUTH").arg(password).query::<()>(&mut conn)?;
        }
        Ok(conn)
    }

    pub fn conn(&self) -> redis::Connection {
        self.client().expect("redis connection")
    }

    /// Every key and its string value (other types as their TYPE name).
    pub fn dump(&self) -> Vec<(String, String)> {
        self.dump_db(0)
    }

    /// [`Self::dump`] of one numbered database.
    pub fn dump_db(&self, db: u32) -> Vec<(String, String)> {
        let mut conn = self.conn();
        redis::cmd("SELECT").arg(db).query::<()>(&mut conn).unwrap();
        // SCAN, not KEYS: the same habit as production code, even on a test server.
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.into_iter()
            .map(|k| {
                let value = redis::cmd("GET")
                    .arg(&k)
                    .query::<Option<String>>(&mut conn)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                (k, value)
            })
            .collect()
    }

    pub fn ttl(&self, key: &str) -> i64 {
        redis::cmd("TTL").arg(key).query(&mut self.conn()).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Edge {
    pub port: u16,
    child: Child,
    log: std::sync::Mutex<mpsc::Receiver<String>>,
    _state: Option<TempDir>,
}

pub struct EdgeBuilder {
    env: Vec<(String, String)>,
    args: Vec<String>,
    state_dir: Option<PathBuf>,
    manifest: Option<PathBuf>,
    /// The data is in PostgreSQL (`pg`): no state dir is shared, as on separate machines.
    separate_machines: bool,
}

impl EdgeBuilder {
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.env.push((
            format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            value.to_string(),
        ));
        self
    }

    /// Share a state dir (and so one SQLite database) between instances.
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// An environment variable of the host process itself, like `SSL_CERT_FILE`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// A command-line argument of `edge-host up`, like `--max-instance-reuse-count`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn manifest(mut self, path: &Path) -> Self {
        self.manifest = Some(path.to_path_buf());
        self
    }

    pub fn start(self) -> Edge {
        // A free port can be taken by another test's process before edge-host binds it.
        let mut last = String::new();
        for _ in 0..5 {
            match self.try_start() {
                Ok(edge) => return edge,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last}")
    }

    /// Starts edge-host; on failure returns what it printed.
    pub fn try_start(&self) -> Result<Edge, String> {
        let shared = self.state_dir.clone().filter(|_| !self.separate_machines);
        let (own_state, state_dir) = match shared {
            Some(dir) => (None, dir),
            None => {
                let t = TempDir::new();
                let p = t.0.clone();
                (Some(t), p)
            }
        };
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-host"));
        cmd.args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("-f")
            .arg(self.manifest.clone().unwrap_or_else(manifest))
            .args(&self.args)
            .env("SPIN_VARIABLE_JWT_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("edge-host");
        let (tx, rx) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        // Only the readers hold senders now, so the channel closes when both pipes do.
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with("Serving") => {
                    return Ok(Edge {
                        port,
                        child,
                        log: std::sync::Mutex::new(rx),
                        _state: own_state,
                    });
                }
                Ok(line) => seen.push(line),
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // The readers may still hold its last lines (such as "Address already
                        // in use", which the caller retries on): wait for the pipes to close.
                        while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
                            seen.push(line);
                        }
                        return Err(format!("edge-host exited ({status}): {}", seen.join("\n")));
                    }
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("edge-host did not start: {}", seen.join("\n")))
    }
}

impl Edge {
    pub fn builder(redis: &str) -> EdgeBuilder {
        let mut builder = EdgeBuilder {
            env: Vec::new(),
            args: Vec::new(),
            state_dir: None,
            manifest: None,
            separate_machines: false,
        }
        .var("redis_address", redis);
        if let Some(vars) = pg::database_vars(redis) {
            builder.separate_machines = true;
            for (name, value) in vars {
                builder = builder.var(name, &value);
            }
        }
        builder
    }

    pub fn start(redis: &RedisServer) -> Self {
        Self::builder(&redis.url()).start()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the host and component have printed so far.
    pub fn drain_log(&self) -> Vec<String> {
        self.log.lock().unwrap().try_iter().collect()
    }

    /// The log up to the first line holding `needle`, and whatever else has arrived by then;
    /// it waits up to 10 s for that line. A line reaches the test through a reader thread,
    /// so it may arrive after the response that caused it: reading only what is there loses it.
    pub fn log_until(&self, needle: &str) -> String {
        self.log_until_all(&[needle])
    }

    /// The log up to the line where the last of `needles` has appeared, in any order: the
    /// host's lines and the component's come through separate pipes, so their order is not
    /// the order they were written in.
    pub fn log_until_all(&self, needles: &[&str]) -> String {
        let log = self.log.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen: Vec<String> = Vec::new();
        let missing = |seen: &[String]| {
            needles
                .iter()
                .any(|needle| !seen.iter().any(|line| line.contains(needle)))
        };
        while missing(&seen) {
            match log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        seen.extend(log.try_iter());
        seen.join("\n")
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA and a server certificate it signed for `localhost` and 127.0.0.1, made with
/// the openssl command (`.ci/run` installs it): the paths of `(ca.pem, server.pem, server.key)`,
/// as the strings redis-server's options and `SSL_CERT_FILE` take.
pub fn tls_files(dir: &Path) -> (String, String, String) {
    let openssl = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl must be installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {key} -days 2 -subj /CN=edge-test-ca -keyout ca.key -out ca.pem"
    ));
    openssl(&format!(
        "req {key} -subj /CN=localhost -keyout server.key -out server.csr"
    ));
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -extfile san.cnf -out server.pem",
    );
    let path = |name: &str| dir.join(name).display().to_string();
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("edge-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn send(req: reqwest::blocking::RequestBuilder) -> Reply {
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

pub fn get(url: &str, token: Option<&str>) -> Reply {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send(req)
}

pub fn post(url: &str, token: Option<&str>, body: serde_json::Value) -> Reply {
    let mut req = client().post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send(req)
}

pub fn signup(edge: &Edge, email: &str) -> String {
    let r = post(
        &edge.url("/auth/signup"),
        None,
        serde_json::json!({ "email": email, "password": PASSWORD }),
    );
    assert_eq!(r.status, 201, "signup: {}", r.text);
    r.body["data"]["token"].as_str().unwrap().to_string()
}

/// A fresh token from a login that must succeed.
pub fn login_token(edge: &Edge, email: &str) -> String {
    let r = login(edge, email, PASSWORD);
    assert_eq!(r.status, 200, "login: {}", r.text);
    r.body["data"]["token"].as_str().unwrap().to_string()
}

pub fn login(edge: &Edge, email: &str, password: &str) -> Reply {
    post(
        &edge.url("/auth/login"),
        None,
        serde_json::json!({ "email": email, "password": password }),
    )
}

/// `n` instances on one Redis and one state dir, as behind a load balancer.
pub fn cluster(redis: &RedisServer, n: usize) -> (Vec<Edge>, TempDir) {
    let state = TempDir::new();
    let edges = (0..n)
        .map(|_| Edge::builder(&redis.url()).state_dir(&state.0).start())
        .collect();
    (edges, state)
}
