#!/usr/bin/env python3
"""Both builds of the edge on edge-host beside the seed's design, in one run on this machine:
the WASI 0.3 chain (spin.toml: edge-guard as middleware in front of alchemix-api, instances
reused as Spin 4.1 reuses them), the same code as one WASI 0.3 component
(examples/single-component, to show what the hop costs) and the WASI 0.2 component
(spin-wasip2.toml, a fresh instance per request), against node-seed as one process and as
WORKERS=2 (one process per core).

For each server and endpoint at BENCH_CONNECTIONS (16 by default): req/s, p50 and p99, CPU per
request (the server's process tree and its Redis), Redis commands and new Redis connections per
request (`total_connections_received`), and Redis round trips per protected request (MONITOR).
Rounds alternate the servers; ratios are medians over rounds. Writes bench-results/worlds.json.

With a PostgreSQL server in EDGE_TEST_POSTGRES (`scripts/bench` starts one through
scripts/with-postgres), both builds also serve the inventory read from PostgreSQL (page cache
off, a database of their own), beside the same read from SQLite.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from common import PASSWORD, ROOT, build_release, free_port, http, spawn, stop_all  # noqa: E402
from run import SECRET, Redis, cpu_seconds, lua, median, run, wait_http, wrk  # noqa: E402
from run import node_seed as run_node_seed  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CHAIN = "wasi 0.3 chain"
SINGLE = "wasi 0.3 one component"
SINGLE_MANIFEST = "examples/single-component/spin.toml"
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
BAD_LOGIN = {"email": "bench@example.com", "password": "wrong-password"}


def tree_cpu(pid):
    """CPU of a process and its children (node's cluster workers are children of the master)."""
    total = cpu_seconds(pid)
    try:
        children = run(["pgrep", "-P", str(pid)]).split()
    except subprocess.CalledProcessError:
        children = []
    return total + sum(tree_cpu(int(c)) for c in children)


def connections_received(redis):
    for line in redis.cli("INFO", "stats").splitlines():
        if line.startswith("total_connections_received:"):
            return int(line.split(":")[1])
    return 0


def measure(server, path, script):
    base, redis, pid = server["base"], server["redis"], server["pid"]
    before, conns = redis.commandstats(), connections_received(redis)
    cpu, rcpu = tree_cpu(pid), cpu_seconds(redis.pid)
    r = wrk(base + path, CONNECTIONS, script)
    n = max(r["requests"], 1)
    r["cpu_us_per_request"] = round((tree_cpu(pid) - cpu) / n * 1e6, 1)
    r["redis_cpu_us_per_request"] = round((cpu_seconds(redis.pid) - rcpu) / n * 1e6, 1)
    calls = sum(redis.commandstats().values()) - sum(before.values()) - 1
    r["redis_commands_per_request"] = round(calls / n, 2)
    # Less the bench's own redis-cli connections after the first reading (commandstats, stats).
    r["new_redis_connections_per_request"] = round(max(connections_received(redis) - conns - 2, 0) / n, 4)
    return r


def seed_user(base):
    http("POST", base + "/auth/signup", {"email": "bench@example.com", "password": PASSWORD})
    return http("POST", base + "/auth/login", {"email": "bench@example.com", "password": PASSWORD})[1]["data"]["token"]


def refuse_logins(base):
    while http("POST", base + "/auth/login", BAD_LOGIN)[0] != 429:
        pass


def edge(tmp, name, manifest, env):
    redis = Redis(tmp)
    port = free_port()
    proc = spawn([os.path.join(ROOT, "target/release/edge-host"), "up", "--listen", f"127.0.0.1:{port}",
                  "--state-dir", os.path.join(tmp, f"{name}-state"), "-f", os.path.join(ROOT, manifest)],
                 env={"SPIN_VARIABLE_JWT_SECRET": SECRET, "SPIN_VARIABLE_REDIS_ADDRESS": redis.url,
                      "SPIN_VARIABLE_API_RATE_LIMIT": "1000000000/15m",
                      "SPIN_VARIABLE_USER_RATE_LIMIT": "1000000000/15m", **env},
                 log=os.path.join(tmp, f"{name}.log"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health")
    token = seed_user(base)
    for i in range(10):
        http("POST", base + "/api/inventory", {"name": f"Bottle {i}", "Stock Number": i}, token)
    http("GET", base + "/api/inventory", token=token)
    refuse_logins(base)
    return {"base": base, "redis": redis, "pid": proc.pid, "token": token}


def postgres_env(name):
    """The variables of an edge whose data is in a new database of the bench's PostgreSQL."""
    server = os.environ["EDGE_TEST_POSTGRES"]
    host, port = server.rsplit(":", 1)
    database = f"bench_{name.replace('-', '_')}"
    run(["psql", "-h", host, "-p", port, "-U", "postgres", "-q", "-c", f"DROP DATABASE IF EXISTS {database}",
         "-c", f"CREATE DATABASE {database}"])
    return {"SPIN_VARIABLE_DATABASE_ADDRESS": f"postgres://{server}", "SPIN_VARIABLE_DATABASE_NAME": database,
            "SPIN_VARIABLE_DATABASE_USER": "postgres", "SPIN_VARIABLE_DATABASE_TLS": "disable",
            "SPIN_VARIABLE_PAGE_CACHE": "off"}


def node_seed(tmp, workers):
    base, redis, token, pid = run_node_seed(tmp, workers)
    return {"base": base, "redis": redis, "pid": pid, "token": token}


def main():
    build_release()
    tmp = tempfile.mkdtemp(prefix="edge-worlds-")
    try:
        off = {"SPIN_VARIABLE_PAGE_CACHE": "off"}
        servers = {
            CHAIN: edge(tmp, "chain", "spin.toml", {}),
            f"{CHAIN}, page_cache=off": edge(tmp, "chain-off", "spin.toml", off),
            SINGLE: edge(tmp, "p3", SINGLE_MANIFEST, {}),
            f"{SINGLE}, page_cache=off": edge(tmp, "p3-off", SINGLE_MANIFEST, off),
            "wasi 0.2": edge(tmp, "p2", "spin-wasip2.toml", {}),
            "wasi 0.2, page_cache=off": edge(tmp, "p2-off", "spin-wasip2.toml", off),
            **({
                f"{CHAIN}, PostgreSQL, page_cache=off": edge(tmp, "chain-pg", "spin.toml", postgres_env("chain-pg")),
                "wasi 0.2, PostgreSQL, page_cache=off": edge(tmp, "p2-pg", "spin-wasip2.toml", postgres_env("p2-pg")),
            } if os.environ.get("EDGE_TEST_POSTGRES") else {}),
            "node-seed": node_seed(tmp, 1),
            "node-seed WORKERS=2": node_seed(tmp, 2),
        }
        # What each server is asked: (row, path, script); the cache-off edges answer only the
        # inventory row, which is their SQLite read.
        plan = {}
        for name, s in servers.items():
            tag = name.replace(" ", "_").replace(",", "").replace("=", "")
            inventory = ("GET /api/inventory", "/api/inventory", lua(tmp, f"{tag}-inv", token=s["token"]))
            if "PostgreSQL" in name:
                plan[name] = [("GET /api/inventory (PostgreSQL read)", *inventory[1:])]
                continue
            if "page_cache=off" in name:
                plan[name] = [("GET /api/inventory (SQLite read)", *inventory[1:])]
                continue
            rows = [inventory,
                    ("GET /auth/me", "/auth/me", lua(tmp, f"{tag}-me", token=s["token"])),
                    ("POST /auth/login (429)", "/auth/login", lua(tmp, f"{tag}-429", "POST", BAD_LOGIN))]
            if name.startswith("node"):
                rows.append(("GET /api/inventory (SQLite read)", *inventory[1:]))
            plan[name] = rows
        results = {name: {row: [] for row, _, _ in rows} for name, rows in plan.items()}
        order = list(plan)
        for k in range(ROUNDS):
            for name in (order if k % 2 == 0 else order[::-1]):
                for row, path, script in plan[name]:
                    results[name][row].append(measure(servers[name], path, script))
        trips = {}
        for name, s in servers.items():
            fire = lambda s=s: http("GET", s["base"] + "/api/inventory", token=s["token"])  # noqa: E731
            trips[name] = s["redis"].round_trips(fire)

        def med(name, row, stat):
            return median([r[stat] for r in results[name][row]])

        print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.machine()}; "
              f"{ROUNDS} rounds x {os.environ.get('BENCH_SECONDS', '5')} s at {CONNECTIONS} connections")
        print(f"{'server':28} {'endpoint':34} {'req/s':>9} {'p50':>7} {'p99':>7} {'cpu µs':>8} "
              f"{'redis cmd':>9} {'new conn':>9}")
        for name, rows in plan.items():
            for row, _, _ in rows:
                print(f"{name:28} {row:34} {med(name, row, 'rps'):9.0f} {med(name, row, 'p50_ms'):7.2f} "
                      f"{med(name, row, 'p99_ms'):7.2f} "
                      f"{med(name, row, 'cpu_us_per_request') + med(name, row, 'redis_cpu_us_per_request'):8.0f} "
                      f"{med(name, row, 'redis_commands_per_request'):9.2f} "
                      f"{med(name, row, 'new_redis_connections_per_request'):9.4f}")
        ratios = {}

        def ratio(key, measured, base):
            """Prints and keeps measured / base, round by round: req/s and p99."""
            per = [e["rps"] / n["rps"] for e, n in zip(measured, base)]
            p99 = [e["p99_ms"] / n["p99_ms"] for e, n in zip(measured, base)]
            ratios[key] = {"rps": round(median(per), 2), "p99": round(median(p99), 2),
                           "rounds": [round(x, 2) for x in per]}
            print(f"  {key:80} {median(per):5.2f}x  p99 {median(p99):4.2f}  {[round(x, 2) for x in per]}")

        print("\nratios: edge / node-seed (req/s; p99), median over rounds [each round]")
        for edge_name in (CHAIN, SINGLE, "wasi 0.2"):
            for row in ("GET /api/inventory", "GET /api/inventory (SQLite read)", "GET /auth/me",
                        "POST /auth/login (429)"):
                source = f"{edge_name}, page_cache=off" if "SQLite" in row else edge_name
                for seed in ("node-seed", "node-seed WORKERS=2"):
                    ratio(f"{source} / {seed}: {row}", results[source][row], results[seed][row])
        for edge_name in (CHAIN, "wasi 0.2"):
            source = f"{edge_name}, PostgreSQL, page_cache=off"
            if source not in results:
                continue
            row = "GET /api/inventory (PostgreSQL read)"
            sqlite = results[f"{edge_name}, page_cache=off"]["GET /api/inventory (SQLite read)"]
            for seed, against in (("node-seed", None), ("node-seed WORKERS=2", None),
                                  (f"{edge_name}, page_cache=off (SQLite read)", sqlite)):
                base = against if against is not None else results[seed]["GET /api/inventory (SQLite read)"]
                ratio(f"{source} / {seed}: {row}", results[source][row], base)
        print("\nthe chain's cost: chain / single component (req/s; p99), median over rounds [each round]")
        for row, off_row in (("GET /api/inventory (SQLite read)", True), ("GET /api/inventory", False),
                             ("GET /auth/me", False), ("POST /auth/login (429)", False)):
            chain, single = (f"{n}, page_cache=off" if off_row else n for n in (CHAIN, SINGLE))
            ratio(f"{chain} / {single}: {row}", results[chain][row], results[single][row])
        print("\nRedis per GET /api/inventory (MONITOR, 50 sequential reads): round trips, commands")
        for name, (rt, cmds) in trips.items():
            print(f"  {name:28} {rt:.2f} round trips, {cmds:.2f} commands")
        commit = run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).strip()
        out = os.path.join(ROOT, "bench-results")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "worlds.json"), "w") as f:
            json.dump({"commit": commit, "machine": {"host": platform.node(), "cores": os.cpu_count()},
                       "connections": CONNECTIONS, "results": results, "ratios": ratios,
                       "round_trips": trips}, f, indent=1)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
