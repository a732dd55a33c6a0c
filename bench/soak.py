#!/usr/bin/env python3
"""Chaos soak: three edge-host instances under continuous load while Redis is killed and
restarted three times (keeping its data on disk), then once restarted empty.

Prints responses by status, the recovery time after each restart, and every revoked token
that was accepted. Targets: no status outside {200, 201, 401, 404, 429, 503}, no revoked
token accepted, recovery under 2 s each time.
"""

import collections
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from common import PASSWORD, build_release, edge_host_cmd, free_port, http

SECRET = "soak-secret-soak-secret-soak-secret-0123456"
ALLOWED = {200, 201, 401, 404, 429, 503}
OUTAGE_SECONDS = float(os.environ.get("SOAK_OUTAGE_SECONDS", "3"))
STEADY_SECONDS = float(os.environ.get("SOAK_STEADY_SECONDS", "5"))
PROCS = []






class RedisProc:
    def __init__(self, tmp):
        self.port = free_port()
        self.dir = os.path.join(tmp, "redis")
        os.makedirs(self.dir)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=0.2)
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    s.close()
                    return
            except OSError:
                time.sleep(0.02)
        sys.exit("redis did not start")

    def kill(self, wipe=False):
        self.proc.kill()
        self.proc.wait()
        if wipe:
            shutil.rmtree(self.dir)
            os.makedirs(self.dir)


def main():
    tmp = tempfile.mkdtemp(prefix="edge-soak-")
    try:
        build_release()
        redis = RedisProc(tmp)
        state = os.path.join(tmp, "state")
        bases = []
        for i in range(3):
            port = free_port()
            PROCS.append(subprocess.Popen(
                edge_host_cmd(port, state),
                env={**os.environ, "SPIN_VARIABLE_JWT_SECRET": SECRET,
                     "SPIN_VARIABLE_REDIS_ADDRESS": f"redis://127.0.0.1:{redis.port}",
                     "SPIN_VARIABLE_API_RATE_LIMIT": "100000000/15m",
                     "SPIN_VARIABLE_USER_RATE_LIMIT": "100000000/15m",
                     "SPIN_VARIABLE_AUTH_RATE_LIMIT": "1000/1m"},
                stdout=open(os.path.join(tmp, f"edge{i}.log"), "w"), stderr=subprocess.STDOUT))
            bases.append(f"http://127.0.0.1:{port}")
        for b in bases:
            for _ in range(300):
                if http("GET", b + "/health")[0] in (200, 503):
                    break
                time.sleep(0.1)

        users = []
        revoked = []
        for i in range(6):
            email = f"soak{i}@example.com"
            status, body = http("POST", bases[i % 3] + "/auth/signup", {"email": email, "password": PASSWORD})
            token = body["data"]["token"]
            users.append((email, token))
            # A second session, logged out: it must never be accepted again.
            _, body = http("POST", bases[(i + 1) % 3] + "/auth/login", {"email": email, "password": PASSWORD})
            dead = body["data"]["token"]
            assert http("POST", bases[(i + 2) % 3] + "/auth/logout", token=dead)[0] == 200
            revoked.append(dead)
        # One user logs out everywhere: their first token is dead too, the new one lives.
        email, old = users[0]
        assert http("POST", bases[1] + "/auth/logout-all", token=old)[0] == 200
        revoked.append(old)
        _, body = http("POST", bases[2] + "/auth/login", {"email": email, "password": PASSWORD})
        users[0] = (email, body["data"]["token"])

        stats = collections.Counter()
        accepted_revoked = []
        stop = threading.Event()
        lock = threading.Lock()

        def worker(seed):
            rnd = random.Random(seed)
            while not stop.is_set():
                base = rnd.choice(bases)
                pick = rnd.random()
                if pick < 0.35:
                    status, _ = http("GET", base + "/api/inventory", token=rnd.choice(users)[1])
                elif pick < 0.5:
                    status, _ = http("POST", base + "/api/inventory", {"name": "soak"}, token=rnd.choice(users)[1])
                elif pick < 0.75:
                    dead = rnd.choice(revoked)
                    status, _ = http("GET", base + "/auth/me", token=dead)
                    if status == 200:
                        with lock:
                            accepted_revoked.append(dead[-12:])
                elif pick < 0.9:
                    status, _ = http("GET", base + "/auth/me", token=rnd.choice(users)[1])
                else:
                    status, _ = http("POST", base + "/auth/login", {"email": rnd.choice(users)[0], "password": "wrong-password"})
                with lock:
                    stats[status] += 1

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
        for t in threads:
            t.start()

        def recovery():
            """Seconds from Redis being back until every instance serves a protected route."""
            start = time.time()
            pending = set(bases)
            while pending and time.time() - start < 30:
                for b in list(pending):
                    if http("GET", b + "/auth/me", token=users[1][1])[0] == 200:
                        pending.discard(b)
                time.sleep(0.01)
            return time.time() - start if not pending else float("inf")

        recoveries = []
        time.sleep(STEADY_SECONDS)
        for round_ in range(4):
            wipe = round_ == 3
            redis.kill(wipe=wipe)
            time.sleep(OUTAGE_SECONDS)
            redis.start()
            took = recovery()
            recoveries.append((("restarted empty" if wipe else "restarted with its data"), took))
            print(f"restart {round_ + 1} ({recoveries[-1][0]}): all instances serving after {took:.3f} s", flush=True)
            time.sleep(STEADY_SECONDS)
        stop.set()
        for t in threads:
            t.join(timeout=15)

        total = sum(stats.values())
        print(f"\nresponses: {total}")
        for status, n in sorted(stats.items(), key=lambda kv: str(kv[0])):
            print(f"  {status}: {n}")
        outside = {s: n for s, n in stats.items() if s not in ALLOWED}
        print(f"responses outside {sorted(ALLOWED)}: {sum(outside.values())} {outside or ''}")
        print(f"revoked tokens accepted: {len(accepted_revoked)}")
        worst = max(t for _, t in recoveries)
        print(f"worst recovery: {worst:.3f} s")
        ok = not outside and not accepted_revoked and worst < 2
        print("RESULT:", "PASS" if ok else "FAIL")
        sys.exit(0 if ok else 1)
    finally:
        for p in PROCS:
            p.terminate()
        try:
            redis.kill()
        except Exception:
            pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
