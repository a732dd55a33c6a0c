"""Helpers shared by the benchmark and the chaos soak: ports, JSON over HTTP, the build."""

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PASSWORD = "Str0ng!Passw0rd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(method, url, body=None, token=None, timeout=30):
    """(status, parsed JSON body); a transport failure is ("error:<kind>", None), never raised."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"null")
        except ValueError:
            return e.code, None
    except Exception as e:
        return f"error:{type(e).__name__}", None


PROCS = []


def spawn(cmd, env=None, cwd=None, log=None):
    """A background process, stopped by `stop_all` (its output to `log`, or dropped)."""
    out = open(log, "w") if log else subprocess.DEVNULL
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        p.terminate()
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def build_release():
    """The release host and the component, as users run them."""
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "edge-host"], cwd=ROOT, check=True)
    # One cargo invocation each: the guard's spin-sdk features must not unify into the API's.
    for component in ("alchemix-edge-wasip2", "alchemix-edge-wasip3", "alchemix-api-wasip3", "edge-guard-wasip3"):
        subprocess.run(["cargo", "build", "--release", "-q", "--target", "wasm32-wasip2", "-p", component],
                       cwd=ROOT, check=True)


def edge_host_cmd(port, state_dir):
    return [os.path.join(ROOT, "target/release/edge-host"), "up", "--listen", f"127.0.0.1:{port}",
            "--state-dir", state_dir, "-f", os.path.join(ROOT, "spin.toml")]
