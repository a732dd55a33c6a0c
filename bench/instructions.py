"""Instructions per request, counted by callgrind: unlike req/s and CPU time, the count is the same
on a busy VM and a quiet one, so two commits compare on any machine.

edge-host runs under valgrind with `EDGE_HOST_VALGRIND=1`: Spin's engine settings except the
pooling allocator, whose address-space reservation valgrind cannot make (so each instance's
memory is mapped and unmapped per request instead of reused). One client on one keep-alive
connection sends each probe's requests one after another; callgrind's counters are zeroed
before them and dumped after, so only those requests are counted. Instructions in code without
a file (the component, compiled by Cranelift at startup) are the guest's share, named from the
perf map wasmtime writes (`EDGE_HOST_PERFMAP=1`). edge-host also logs each `memory.grow` of the
guest (`EDGE_HOST_LOG_MEMORY_GROWTH=1`): a count no instruction total shows, and one the pooling
allocator makes costly (see `GrowthLog` in tests/host/src/lib.rs).
"""

import json
import os
import bisect
import re
import shutil
import subprocess
import sys
import tempfile
import time
from http.client import HTTPConnection

sys.path.insert(0, os.path.dirname(__file__))
from common import PASSWORD, ROOT, build_release, edge_host_cmd, free_port, http, spawn, stop_all  # noqa: E402

REQUESTS = int(os.environ.get("INSTRUCTIONS_REQUESTS", "40"))
SECRET = "instructions-secret-0123456789abcdef0123456789"
ORIGIN = "https://app.example.com"
def wait_for(check, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"{what} did not come up")


class Host:
    """edge-host under callgrind, with its own redis-server."""

    def __init__(self, tmp, name, env):
        self.tmp, self.name = tmp, name
        redis_port = free_port()
        spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        self.port = free_port()
        self.out = os.path.join(tmp, f"{name}.callgrind")
        self.log = os.path.join(tmp, f"{name}.log")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}"]
        self.proc = spawn(cmd + edge_host_cmd(self.port, os.path.join(tmp, f"{name}-state")),
                          env={"EDGE_HOST_VALGRIND": "1", "EDGE_HOST_PERFMAP": "1", "EDGE_HOST_LOG_MEMORY_GROWTH": "1",
                               "SPIN_VARIABLE_JWT_SECRET": SECRET,
                               "SPIN_VARIABLE_REDIS_ADDRESS": f"redis://127.0.0.1:{redis_port}",
                               "SPIN_VARIABLE_API_RATE_LIMIT": "1000000000/15m",
                               "SPIN_VARIABLE_USER_RATE_LIMIT": "1000000000/15m",
                               "SPIN_VARIABLE_CORS_ORIGINS": ORIGIN, **env},
                          log=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(lambda: http("GET", self.base + "/health", timeout=20)[0] == 200, f"edge-host {name}")
        self.conn = HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.parts = 0

    def callgrind(self, command):
        subprocess.run(["callgrind_control", command, str(self.proc.pid)], check=True, capture_output=True)

    def count(self, method, path, headers, body=None, expect=200):
        """Instructions per request over REQUESTS requests, the guest's, the guest's by function,
        and the guest's memory growths."""
        payload = json.dumps(body) if body is not None else None
        self.send(method, path, headers, payload, expect)
        grown = self.growths()
        self.callgrind("-z")
        for _ in range(REQUESTS):
            self.send(method, path, headers, payload, expect)
        self.callgrind("-d")
        grown = self.growths() - grown
        self.parts += 1
        dump = f"{self.out}.{self.parts}"
        total, guest = instructions(dump, f"/tmp/perf-{self.proc.pid}.map")
        per_function = {name: n / REQUESTS for name, n in guest.items()}
        return {"instructions": round(total / REQUESTS), "guest": round(sum(guest.values()) / REQUESTS),
                "memory_grows": grown / REQUESTS,
                "guest_functions": dict(sorted(per_function.items(), key=lambda kv: -kv[1])[:12]),
                "sqlite": {stage: round(n / REQUESTS) for stage, n in sqlite_stages(dump).items()}}

    def growths(self):
        """The guest memory growths edge-host has logged so far (the log is written as it goes)."""
        with open(self.log, errors="replace") as f:
            return sum("guest memory grew" in line for line in f)

    def send(self, method, path, headers, payload, expect):
        self.conn.request(method, path, body=payload, headers=headers)
        resp = self.conn.getresponse()
        resp.read()
        if resp.status != expect:
            sys.exit(f"{self.name}: {method} {path} answered {resp.status}, expected {expect}")


def instructions(dump, perf_map):
    """Total instructions in a callgrind dump, and those in code that belongs to no file, by
    the guest function the perf map names."""
    symbols = []
    with open(perf_map) as f:
        for line in f:
            start, size, name = line.rstrip("\n").split(" ", 2)
            symbols.append((int(start, 16), int(size, 16), readable(name)))
    symbols.sort()
    starts = [s[0] for s in symbols]
    out = subprocess.run(["callgrind_annotate", "--threshold=100", dump],
                         check=True, capture_output=True, text=True).stdout
    total, guest = 0, {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        n, where = int(m.group(1).replace(",", "")), m.group(2)
        if where == "PROGRAM TOTALS":
            total = n
        elif where.endswith("[???]"):
            address = int(re.search(r"0x([0-9a-f]+)", where).group(1), 16)
            i = bisect.bisect_right(starts, address) - 1
            named = i >= 0 and address < symbols[i][0] + symbols[i][1]
            name = symbols[i][2] if named else "(unnamed)"
            guest[name] = guest.get(name, 0) + n
    return total, guest


# Each stage of a SQLite statement on a new connection, as the instructions spent inside the host
# function that does it, callees included (the release profile keeps the host's symbols).
SQLITE_STAGES = {
    "open": "sqlite3_open_v2",
    "prepare": "sqlite3_prepare_v3",
    "schema parse": "sqlite3InitOne",
    "step": "sqlite3_step",
    "close": "core::ptr::drop_in_place<rusqlite::Connection>",
}


def sqlite_stages(dump):
    """The SQLite stages' inclusive counts; "prepare" is split into the schema parse that a new
    connection's first statement triggers and the statement's own compile."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                         check=True, capture_output=True, text=True).stdout
    wanted = {function: stage for stage, function in SQLITE_STAGES.items()}
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+[^:]*:(.*?) \[", line)
        if m and m.group(2) in wanted:
            found[wanted[m.group(2)]] = int(m.group(1).replace(",", ""))
    if not found:
        return {}
    n = lambda stage: found.get(stage, 0)  # noqa: E731
    return {"open": n("open"), "schema parse": n("schema parse"),
            "statement compile": n("prepare") - n("schema parse"), "step": n("step"), "close": n("close")}


def readable(symbol):
    """`wasm[0]::function[364]::_ZN4sha26sha25611compress25617h…E` as `sha2::sha256::compress256`
    (legacy Rust mangling; other names are kept as they are, without the wasm prefix)."""
    name = symbol.split("::", 2)[-1] if symbol.startswith("wasm[") else symbol
    if not name.startswith("_ZN"):
        return name
    parts, rest = [], name[3:]
    while rest and rest[0].isdigit():
        digits = re.match(r"\d+", rest).group(0)
        size = int(digits)
        parts.append(rest[len(digits):len(digits) + size])
        rest = rest[len(digits) + size:]
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    return "::".join(parts) or name


def user(host):
    http("POST", host.base + "/auth/signup", {"email": "count@example.com", "password": PASSWORD}, timeout=60)
    token = http("POST", host.base + "/auth/login", {"email": "count@example.com", "password": PASSWORD},
                 timeout=60)[1]["data"]["token"]
    for i in range(10):
        http("POST", host.base + "/api/inventory", {"name": f"Bottle {i}", "Stock Number": i}, token, timeout=60)
    return token


def main():
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    print("building the release host and component...", flush=True)
    build_release()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cached = Host(tmp, "cached", {})
            token = user(cached)
            auth = {"authorization": f"Bearer {token}"}
            preflight = {"origin": ORIGIN, "access-control-request-method": "GET"}
            results["CORS preflight"] = cached.count("OPTIONS", "/api/inventory", preflight, expect=204)
            results["GET /api/inventory, no token (401)"] = cached.count("GET", "/api/inventory", {}, expect=401)
            results["GET /api/inventory, page cache hit"] = cached.count("GET", "/api/inventory", auth)
            results["GET /auth/me"] = cached.count("GET", "/auth/me", auth)
            uncached = Host(tmp, "uncached", {"SPIN_VARIABLE_PAGE_CACHE": "off"})
            auth = {"authorization": f"Bearer {user(uncached)}"}
            results["GET /api/inventory, page_cache = off (SQLite read)"] = uncached.count(
                "GET", "/api/inventory", auth)
            wrong = {"email": "count@example.com", "password": "wrong-password"}
            while http("POST", uncached.base + "/auth/login", wrong, timeout=60)[0] != 429:
                pass
            results["POST /auth/login -> 429"] = uncached.count(
                "POST", "/auth/login", {"content-type": "application/json"}, wrong, expect=429)
        finally:
            stop_all()
    print(f"instructions per request (callgrind, {REQUESTS} requests each, edge-host user space):")
    for name, r in results.items():
        print(f"  {name:<52} {r['instructions']:>11,}   guest {r['guest']:>9,} ({r['guest'] / r['instructions']:.0%})"
              f"   memory grows {r['memory_grows']:.2f}")
    hit = results["GET /api/inventory, page cache hit"]
    sqlite_read = results["GET /api/inventory, page_cache = off (SQLite read)"]
    if sqlite_read["sqlite"]:
        total, spent = sqlite_read["instructions"], sum(sqlite_read["sqlite"].values())
        print("a SQLite read's instructions, by where they go:")
        for name, n in [*sqlite_read["sqlite"].items(), ("SQLite in all", spent),
                        ("the guest", sqlite_read["guest"]),
                        ("the rest of the host (wasmtime, hyper, Redis client, tokio)",
                         total - spent - sqlite_read["guest"])]:
            print(f"  {name:<60} {n:>11,} ({n / total:.0%})")
    for what, r in (("cached read", hit), ("SQLite read", sqlite_read)):
        print(f"the guest's instructions per {what}, by function:")
        for name, n in r["guest_functions"].items():
            print(f"  {n:>9,.0f}  {name[:100]}")
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench-results", "instructions.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("written: bench-results/instructions.json")


if __name__ == "__main__":
    main()
