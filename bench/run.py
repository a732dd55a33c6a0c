#!/usr/bin/env python3
"""The edge's benchmark: alchemix-edge on edge-host beside the seed plan's own design
(shared/bench/node-seed) and the physical floor (redis-benchmark running the component's own
check script with EVALSHA), all measured in one run on this machine.

Prints req/s, p50 and p99 per endpoint and concurrency, the CPU each server and its Redis spent
per request, Redis commands and round trips per request, the ratios against the baselines, and
a breakdown of an inventory request's CPU by stage; writes the same to bench-results/latest.json.
"""

import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from common import PASSWORD, ROOT, build_release, edge_host_cmd, free_port, http, spawn, stop_all

STATS = ("rps", "p50_ms", "p99_ms", "redis_commands_per_request", "cpu_us_per_request",
         "redis_cpu_us_per_request")
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1,16").split(",")]
# A comma-separated subset of the endpoint names below, to iterate on one path quickly.
ONLY = [e.strip() for e in os.environ.get("BENCH_ONLY", "").split(",") if e.strip()]
ORIGIN = "https://bench.example"
SECRET = "bench-secret-bench-secret-bench-secret-0123"
NODE_SEED = os.environ.get("NODE_SEED_DIR", os.path.join(ROOT, "..", "shared", "bench", "node-seed"))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"no answer from {url}")


SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"
TLS_KEYS = {"rsa": ["-newkey", "rsa:2048"],
            "ecdsa": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]}


def tls_files(tmp, kind):
    """A private CA and a server certificate it signed for 127.0.0.1, with RSA 2048 keys (what
    hosted Redis services commonly present) or ECDSA P-256: (ca.pem, server.pem, server.key)."""
    d = os.path.join(tmp, f"tls-{kind}")
    if not os.path.exists(d):
        os.makedirs(d)
        key = [*TLS_KEYS[kind], "-nodes"]
        run(["openssl", "req", "-x509", *key, "-days", "2", "-subj", "/CN=bench-ca",
             "-keyout", "ca.key", "-out", "ca.pem"], cwd=d)
        run(["openssl", "req", *key, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"], cwd=d)
        with open(os.path.join(d, "san.cnf"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.pem"], cwd=d)
    return tuple(os.path.join(d, f) for f in ("ca.pem", "server.pem", "server.key"))


class Redis:
    """A redis-server of the bench's own; with `tls` (a key kind), it also listens with TLS on
    `tls_port` (the plain port stays for the bench's own INFO and MONITOR)."""

    def __init__(self, tmp, tls=None):
        self.port = free_port()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", tmp]
        self.tls_port = None
        if tls:
            ca, cert, key = tls_files(tmp, tls)
            self.tls_port = free_port()
            cmd += ["--tls-port", str(self.tls_port), "--tls-cert-file", cert, "--tls-key-file", key,
                    "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        self.pid = spawn(cmd).pid
        for _ in range(100):
            if self.cli("PING").strip() == "PONG":
                return
            time.sleep(0.05)
        sys.exit("redis-server did not start")

    @property
    def url(self):
        if self.tls_port:
            return f"rediss://127.0.0.1:{self.tls_port}"
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args):
        try:
            return run(["redis-cli", "-p", str(self.port), *args])
        except subprocess.CalledProcessError:
            return ""

    def commandstats(self):
        stats = {}
        for line in self.cli("INFO", "commandstats").splitlines():
            m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
            if m and m.group(1) != "monitor":
                stats[m.group(1)] = int(m.group(2))
        return stats

    def round_trips(self, fire, n=50):
        """(round trips, commands) per request, from MONITOR. Commands run by a script are marked
        'lua' and are not round trips; commands of one client arriving within 40 µs of each
        other were pipelined, so they share one round trip."""
        mon = socket.create_connection(("127.0.0.1", self.port))
        mon.sendall(b"MONITOR\r\n")
        mon.recv(64)
        time.sleep(0.1)
        for _ in range(n):
            fire()
        time.sleep(0.3)
        mon.settimeout(0.5)
        data = b""
        try:
            while True:
                chunk = mon.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        mon.close()
        commands, trips, last = 0, 0, {}
        for line in data.decode(errors="replace").splitlines():
            m = re.match(r"\+(\d+\.\d+) \[\d+ ([^\]]+)\]", line)
            if not m:
                continue
            commands += 1
            stamp, client = float(m.group(1)), m.group(2)
            if client == "lua":
                continue
            if client not in last or stamp - last[client] > 40e-6:
                trips += 1
            last[client] = stamp
        return trips / n, commands / n


def cpu_seconds(pid):
    """User + system CPU a process has used so far (/proc/<pid>/stat, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, conns, script=None):
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{SECONDS}s", "--latency", "--timeout", "10s"]
    if script:
        cmd += ["-s", script]
    out = run(cmd + [url])
    def ms(text):
        v = float(re.match(r"([\d.]+)", text).group(1))
        return v / 1000 if text.endswith("us") else v * 1000 if text.endswith("s") and not text.endswith("ms") else v
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": total,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else None}


def lua(tmp, name, method="GET", body=None, token=None, origin=False):
    path = os.path.join(tmp, f"{name}.lua")
    with open(path, "w") as f:
        f.write(f'wrk.method = "{method}"\n')
        if origin:
            f.write(f'wrk.headers["Origin"] = "{ORIGIN}"\n')
            f.write('wrk.headers["Access-Control-Request-Method"] = "GET"\n')
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
        if token:
            f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        if body is not None:
            f.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
    return path


WRITES_PER_SECOND = float(os.environ.get("BENCH_WRITES_PER_SECOND", "10"))


def first_bottle(base, token):
    """The id of the first bottle the user's inventory page lists."""
    return http("GET", base + "/api/inventory", token=token)[1]["data"][0]["id"]


class Writer:
    """While a run lasts, the same user rewrites one bottle WRITES_PER_SECOND times a second
    (each write retires the user's cached pages on every instance) and a sampler reads the page
    20 times a second, counting how it was served (X-Edge-Cache)."""

    def __init__(self, base, token):
        self.base, self.token = base, token
        self.bottle = first_bottle(base, token)
        self.stop = threading.Event()

    def _write(self):
        k = 0
        while not self.stop.wait(1 / WRITES_PER_SECOND):
            k += 1
            status, _ = http("PUT", f"{self.base}/api/inventory/{self.bottle}",
                             {"name": "Bottle 0", "Stock Number": k % 1000}, self.token)
            self.writes += 1
            self.write_failures += status != 200

    def _sample(self):
        while not self.stop.wait(0.05):
            req = urllib.request.Request(self.base + "/api/inventory",
                                         headers={"authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    how = r.headers.get("x-edge-cache", "none")
            except Exception as e:
                how = f"error:{type(e).__name__}"
            self.served[how] = self.served.get(how, 0) + 1

    def __enter__(self):
        self.stop.clear()
        self.writes, self.write_failures, self.served = 0, 0, {}
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._write, self._sample)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def report(self):
        sampled = max(sum(self.served.values()), 1)
        return {"writes": self.writes, "write_failures": self.write_failures,
                "sampled_hit_ratio": round(self.served.get("hit", 0) / sampled, 3), "sampled": self.served}


def endpoints(tmp, token, tag, uncached=None, writer=None):
    """What each server is asked: {name: {path, script, and optionally target (another server:
    base, redis, pid) and writer (a Writer running beside the load)}}. `uncached` (edge only) is
    a second edge-host with the page cache off, which serves the SQLite read row; node-seed has
    no cache and no inventory writes, so its one inventory path serves all three rows."""
    bad = {"email": "bench@example.com", "password": "wrong-password"}
    inventory = {"path": "/api/inventory", "script": lua(tmp, f"{tag}-inv", token=token)}
    sqlite_read, with_writes = inventory, inventory
    if uncached:
        base, redis, utoken, pid = uncached
        sqlite_read = {"path": "/api/inventory", "script": lua(tmp, f"{tag}-inv-uncached", token=utoken),
                       "target": (base, redis, pid)}
    if writer:
        with_writes = {**inventory, "writer": writer}
    return {
        "GET /health": {"path": "/health", "script": None},
        "GET /auth/me": {"path": "/auth/me", "script": lua(tmp, f"{tag}-me", token=token)},
        "GET /api/inventory": inventory,
        "GET /api/inventory (cache off)": sqlite_read,
        "GET /api/inventory (+ writes)": with_writes,
        "POST /auth/login (429)": {"path": "/auth/login", "script": lua(tmp, f"{tag}-429", "POST", bad)},
    }


def one(server, ep, c):
    base, redis, eps, pid = server
    e = eps[ep]
    if "target" in e:
        base, redis, pid = e["target"]
    if "writer" not in e:
        return load(base + e["path"], c, e["script"], redis, pid)
    with e["writer"] as w:
        r = load(base + e["path"], c, e["script"], redis, pid)
    r.update(w.report())
    return r


def load(url, c, script, redis, pid):
    """One wrk run, with the Redis commands and the CPU (server, its Redis) it cost per request.
    CPU per request is the figure least moved by a shared machine's drift: it counts work done,
    not how fast the machine happened to be during those seconds."""
    before, cpu, rcpu = redis.commandstats(), cpu_seconds(pid), cpu_seconds(redis.pid)
    r = wrk(url, c, script)
    n = max(r["requests"], 1)
    r["cpu_us_per_request"] = round((cpu_seconds(pid) - cpu) / n * 1e6, 1)
    r["redis_cpu_us_per_request"] = round((cpu_seconds(redis.pid) - rcpu) / n * 1e6, 1)
    after = redis.commandstats()
    # INFO counts a call once it has answered, so `after` includes the `before` INFO, not itself.
    calls = sum(after.values()) - sum(before.values()) - 1
    r["redis_commands_per_request"] = round(calls / n, 2)
    return r


def median(values):
    return sorted(values)[len(values) // 2]


def measure(servers):
    """Each endpoint and concurrency is measured ROUNDS times, the servers back to back in
    alternating order, so that drift in the machine's speed (shared VMs drift by 2x within
    minutes) falls on both sides of each ratio. Reported: the median of each figure."""
    results = {name: {} for name in servers}
    ratios = {}
    names = list(servers)
    for ep in next(iter(servers.values()))[2]:
        if ONLY and ep not in ONLY:
            continue
        for c in CONNECTIONS:
            rounds = alternate({name: (lambda name=name: one(servers[name], ep, c)) for name in names})
            key = f"{ep} @{c}"
            for name, rs in rounds.items():
                r = {k: median([x[k] for x in rs]) for k in STATS}
                r["requests"] = sum(x["requests"] for x in rs)
                r["non_2xx"] = sum(x["non_2xx"] for x in rs)
                r["rounds_rps"] = [x["rps"] for x in rs]
                writes = ""
                if "writes" in rs[0]:
                    r["writes"] = sum(x["writes"] for x in rs)
                    r["write_failures"] = sum(x["write_failures"] for x in rs)
                    r["sampled_hit_ratio_rounds"] = [x["sampled_hit_ratio"] for x in rs]
                    writes = (f"  writes {r['writes']} ({r['write_failures']} failed),"
                              f" sampled hits {r['sampled_hit_ratio_rounds']}")
                results[name][key] = r
                print(f"  {name:13} {ep:29} c={c:<3} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:7.2f} ms"
                      f"  p99 {r['p99_ms']:7.2f} ms  {r['redis_commands_per_request']:5.2f} cmds/req"
                      f"  cpu {r['cpu_us_per_request']:5.0f} + redis {r['redis_cpu_us_per_request']:4.0f} us/req"
                      f"  non-2xx {r['non_2xx']}{writes}", flush=True)
            e, n = rounds[names[0]], rounds[names[1]]
            per_round = [(a["rps"] / b["rps"], a["p99_ms"] / b["p99_ms"], total_cpu(a) / total_cpu(b))
                         for a, b in zip(e, n)]
            ratios[key] = {name: round(median([r[i] for r in per_round]), 2)
                           for i, name in enumerate(("rps", "p99", "cpu"))}
            ratios[key].update({f"{name}_rounds": [round(r[i], 2) for r in per_round]
                                for i, name in enumerate(("rps", "p99", "cpu"))})
    return results, ratios


def alternate(runs):
    """Each run ROUNDS times, back to back in alternating order, so that drift in the machine's
    speed falls on both sides of every ratio: {name: [result of each round]}."""
    rounds = {name: [] for name in runs}
    for i in range(ROUNDS):
        for name in list(runs) if i % 2 == 0 else reversed(list(runs)):
            rounds[name].append(runs[name]())
    return rounds


def total_cpu(r):
    return max(r["cpu_us_per_request"] + r["redis_cpu_us_per_request"], 1e-9)


def breakdown(edge_server, uncached, whatif, tls, tmp):
    """What an inventory request's CPU is made of, by probes that stop at each stage: a CORS
    preflight (a fresh instance, no I/O), a request without a token (+ a Redis connection and
    the check script, answered 401), GET /auth/me (+ JWT, a SQLite connection and one small
    statement), the inventory page from the page cache, and the page read from SQLite (an
    edge-host with the cache off); a write (PUT of one bottle) with the cache off, and with it
    on (+ the version bump carrying the list's first page, read back); then that SQLite read
    on a third edge-host with SQLite's memory statistics off (not Spin's setting), and the cached
    read on edges whose Redis is reached over TLS (a handshake per request, as under Spin), with
    an RSA and an ECDSA certificate, trusting only the CA that signed it or the whole system
    bundle, each paired round by round with its reference. 16 connections, medians of the rounds."""
    base, redis, token, pid = edge_server
    ubase, uredis, utoken, upid = uncached
    uscript = lua(tmp, "bd-inv-uncached", token=utoken)
    def put(url, token, name):
        path = f"/api/inventory/{first_bottle(url, token)}"
        return path, lua(tmp, name, "PUT", {"name": "Bottle 0", "Stock Number": 7}, token)

    write, uwrite = put(base, token, "bd-put"), put(ubase, utoken, "bd-put-uncached")
    probes = {
        "preflight (instance only)": (base, "/api/inventory", lua(tmp, "bd-pre", "OPTIONS", origin=True), redis, pid),
        "no token (+ Redis check) 401": (base, "/api/inventory", lua(tmp, "bd-anon"), redis, pid),
        "GET /auth/me (+ JWT, SQLite)": (base, "/auth/me", lua(tmp, "bd-me", token=token), redis, pid),
        "GET /api/inventory (page cache)": (base, "/api/inventory", lua(tmp, "bd-inv", token=token), redis, pid),
        "GET /api/inventory (SQLite)": (ubase, "/api/inventory", uscript, uredis, upid),
        "PUT /api/inventory/:id, cache off": (ubase, *uwrite, uredis, upid),
        "PUT, cache on (+ bump, page back)": (base, *write, redis, pid),
    }
    out = {}
    print("\nwhere GET /api/inventory's CPU goes (alchemix-edge @16; edge-host + its Redis):")
    for name, (url, path, script, r_, p_) in probes.items():
        rs = [load(url + path, 16, script, r_, p_) for _ in range(ROUNDS)]
        r = {k: median([x[k] for x in rs]) for k in STATS}
        out[name] = r
        print(f"  {name:32} {r['rps']:8.0f} req/s  cpu {r['cpu_us_per_request']:5.0f} + redis "
              f"{r['redis_cpu_us_per_request']:4.0f} us/req", flush=True)
    out["GET /api/inventory (SQLite), memstatus off"] = paired(
        "... SQLite memstatus off", (ubase, uscript, uredis, upid), whatif, "bd-whatif", tmp)
    for kind, other in tls.items():
        out[f"GET /api/inventory (page cache), Redis over TLS, {kind}"] = paired(
            f"... page cache, rediss:// {kind}", (base, lua(tmp, "bd-inv", token=token), redis, pid),
            other, f"bd-tls-{kind}", tmp)
    return out


def two_figures(x):
    """Two decimals, or two significant figures below 0.1 (a ratio of 0.003 is not 0.0)."""
    return float(f"{x:.2g}") if abs(x) < 0.1 else round(x, 2)


def paired(name, reference, other, tag, tmp):
    """GET /api/inventory at 16 connections on `other` (an edge from edge()) against
    `reference` (base, script, redis, pid), alternating, paired round by round."""
    base, script, redis, pid = reference
    obase, oredis, otoken, opid = other
    oscript = lua(tmp, tag, token=otoken)
    rounds = alternate({
        "reference": lambda: load(base + "/api/inventory", 16, script, redis, pid),
        "other": lambda: load(obase + "/api/inventory", 16, oscript, oredis, opid),
    })
    pairs = list(zip(rounds["reference"], rounds["other"]))
    r = {k: median([b[k] for _, b in pairs]) for k in STATS}
    r["reference"] = {k: median([a[k] for a, _ in pairs]) for k in STATS}
    r["rps_ratio_rounds"] = [two_figures(b["rps"] / a["rps"]) for a, b in pairs]
    r["cpu_ratio_rounds"] = [two_figures(total_cpu(b) / total_cpu(a)) for a, b in pairs]
    ref = r["reference"]
    print(f"  {name:32} {r['rps']:8.0f} req/s  cpu {r['cpu_us_per_request']:5.0f} + redis "
          f"{r['redis_cpu_us_per_request']:4.0f} us/req  (its reference in the same rounds: {ref['rps']:.0f} req/s, "
          f"cpu {ref['cpu_us_per_request']:.0f} + redis {ref['redis_cpu_us_per_request']:.0f})  "
          f"req/s x{median(r['rps_ratio_rounds'])} {r['rps_ratio_rounds']}, "
          f"cpu/req x{median(r['cpu_ratio_rounds'])} {r['cpu_ratio_rounds']}", flush=True)
    return r


def edge(tmp, name="edge", env=None, tls=None):
    redis = Redis(tmp, tls)
    port = free_port()
    state = os.path.join(tmp, f"{name}-state")
    if tls:
        env = {"SSL_CERT_FILE": tls_files(tmp, tls)[0], **(env or {})}
    proc = spawn(edge_host_cmd(port, state),
          env={"SPIN_VARIABLE_JWT_SECRET": SECRET, "SPIN_VARIABLE_REDIS_ADDRESS": redis.url,
               "SPIN_VARIABLE_API_RATE_LIMIT": "1000000000/15m",
               "SPIN_VARIABLE_USER_RATE_LIMIT": "1000000000/15m", "SPIN_VARIABLE_CORS_ORIGINS": ORIGIN,
               **(env or {})},
          log=os.path.join(tmp, f"{name}.log"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health")
    http("POST", base + "/auth/signup", {"email": "bench@example.com", "password": PASSWORD})
    token = http("POST", base + "/auth/login", {"email": "bench@example.com", "password": PASSWORD})[1]["data"]["token"]
    for i in range(10):
        http("POST", base + "/api/inventory", {"name": f"Bottle {i}", "Stock Number": i}, token)
    http("GET", base + "/api/inventory", token=token)
    while http("POST", base + "/auth/login", {"email": "bench@example.com", "password": "wrong-password"})[0] != 429:
        pass
    return base, redis, token, proc.pid


def node_seed(tmp, workers=1):
    """node-seed on its own Redis, as one process or as `workers` (node's cluster module)."""
    scratch = os.path.join(ROOT, "target", "node-seed")
    if not os.path.exists(os.path.join(scratch, "node_modules")):
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(NODE_SEED, scratch)
        run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=scratch)
    redis = Redis(tmp)
    port = free_port()
    db = os.path.join(tmp, f"node-seed-{workers}.db")
    proc = spawn(["node", "server.js", "--listen", f"127.0.0.1:{port}"], cwd=scratch,
          env={"SPIN_VARIABLE_REDIS_ADDRESS": redis.url, "SPIN_VARIABLE_JWT_SECRET": SECRET,
               "API_MAX": "1000000000", "AUTH_MAX": "5", "DB_PATH": db, "WORKERS": str(workers)},
          log=os.path.join(tmp, f"node-{workers}.log"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health")
    token = http("POST", base + "/auth/signup", {"email": "bench@example.com", "password": PASSWORD})[1]["data"]["token"]
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO bottles (user_id, name) VALUES (1, ?)", [(f"Bottle {i}",) for i in range(10)])
    while http("POST", base + "/auth/login", {"email": "bench@example.com", "password": "wrong-password"})[0] != 429:
        pass
    return base, redis, token, proc.pid


def floor(redis, edge_base, edge_token):
    """redis-benchmark sending the component's check script for the /api/inventory shape,
    answered with the cached page."""
    source = open(os.path.join(ROOT, "src/store/redis.rs")).read()
    script = re.search(r'pub const CHECK_SCRIPT: &str = r#"(.*?)"#;', source, re.S).group(1)
    sha = redis.cli("SCRIPT", "LOAD", script).strip()
    page = "ae:pg:1:bottles:1:50"
    args = ["EVALSHA", sha, "8", "ae:rl:api:127.0.0.1", "ae:rl:user:u1", "ae:rv:" + "0" * 64, "ae:tv:1",
            "ae:epoch", "ae:dv:1", page, "ae:schema",
            "2", "1000000000", "900000", "1", "1000000000", "900000", "1", "1", "2"]
    redis.cli("SET", "ae:epoch", "1")
    # The page the inventory row is served from, as the edge keeps it.
    body = http("GET", edge_base + "/api/inventory", token=edge_token)[1]
    redis.cli("SET", "ae:dv:1", "1")
    redis.cli("SET", page, "1:" + json.dumps(body, separators=(",", ":")))
    out = {}
    for c in CONNECTIONS:
        n = 20000 if c == 1 else 100000
        csv = run(["redis-benchmark", "-p", str(redis.port), "-c", str(c), "-n", str(n), "--csv", *args])
        row = [l for l in csv.splitlines() if l.startswith('"EVALSHA')][0]
        fields = [f.strip('"') for f in row.split(",")]
        out[f"EVALSHA check @{c}"] = {"rps": float(fields[1]), "p50_ms": float(fields[5]), "p99_ms": float(fields[7])}
        print(f"  floor     EVALSHA check script     c={c:<3} {float(fields[1]):9.0f} req/s  p50 {float(fields[5]):7.2f} ms  p99 {float(fields[7]):7.2f} ms", flush=True)
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="edge-bench-")
    try:
        print("building the release host and component...", flush=True)
        build_release()
        base, eredis, etoken, epid = edge(tmp)
        uncached = edge(tmp, "edge-uncached", {"SPIN_VARIABLE_PAGE_CACHE": "off"})
        nbase, nredis, ntoken, npid = node_seed(tmp)

        def fire(url, token):
            return lambda: http("GET", url, token=token)

        rt = {
            "alchemix-edge": eredis.round_trips(fire(base + "/api/inventory", etoken)),
            "alchemix-edge, cache off": uncached[1].round_trips(fire(uncached[0] + "/api/inventory", uncached[2])),
            "node-seed": nredis.round_trips(fire(nbase + "/api/inventory", ntoken)),
        }
        print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
              f"{SECONDS} s per run, {ROUNDS} rounds")
        writer = Writer(base, etoken)
        results, ratios = measure({"alchemix-edge": (base, eredis, endpoints(tmp, etoken, "edge", uncached, writer), epid),
                                   "node-seed": (nbase, nredis, endpoints(tmp, ntoken, "node"), npid)})
        whatif = edge(tmp, "edge-memstatus-off", {"EDGE_HOST_SQLITE_MEMSTATUS": "0", "SPIN_VARIABLE_PAGE_CACHE": "off"})
        tls = {kind: edge(tmp, f"edge-tls-{kind}", tls=kind) for kind in TLS_KEYS}
        # What a host trusts by default: the whole system bundle, loaded again per connection.
        bundle = os.path.join(tmp, "system-bundle-and-ca.pem")
        with open(bundle, "w") as f:
            f.write(open(SYSTEM_CAS).read() + open(tls_files(tmp, "ecdsa")[0]).read())
        tls["ecdsa, system CA bundle"] = edge(tmp, "edge-tls-bundle", {"SSL_CERT_FILE": bundle}, tls="ecdsa")
        results["breakdown"] = breakdown((base, eredis, etoken, epid), uncached, whatif, tls, tmp)
        results["floor"] = floor(eredis, base, etoken)
        print("\nRedis per GET /api/inventory (MONITOR, sequential requests):")
        for name, (trips, commands) in rt.items():
            print(f"  {name:14} {trips:.2f} round trips, {commands:.2f} commands")
        print(f"\nratios (alchemix-edge / node-seed), median of {ROUNDS} paired rounds [each round]:")
        for key, r in ratios.items():
            print(f"  {key:37} req/s x{r['rps']:<5} {r['rps_rounds']}  p99 x{r['p99']:<5} {r['p99_rounds']}"
                  f"  cpu/req x{r['cpu']:<5} {r['cpu_rounds']}")
        for c in CONNECTIONS:
            f = results["floor"][f"EVALSHA check @{c}"]["rps"]
            e = results["alchemix-edge"].get(f"GET /api/inventory @{c}", {}).get("rps")
            if e is None:
                continue
            print(f"  GET /api/inventory @{c} against the Redis floor: {e / f:.3f} of {f:.0f} req/s")
        report = {"machine": {"host": platform.node(), "cores": os.cpu_count(), "arch": platform.machine()},
                  "seconds_per_run": SECONDS, "rounds": ROUNDS, "results": results, "ratios": ratios,
                  "redis_per_inventory_request": {k: {"round_trips": v[0], "commands": v[1]} for k, v in rt.items()},
                  "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
        with open(os.path.join(ROOT, "bench-results", "latest.json"), "w") as f:
            json.dump(report, f, indent=2)
        print("\nwritten: bench-results/latest.json")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
