#!/usr/bin/env python3
"""Runs our edge side by side with NGINX (proxy_cache) and Varnish (malloc) in front of the
same origin, alternating the systems run by run, and writes benches/RESULTS.md.

Started by benches/run.sh, which installs the peers and builds our binaries first.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent
# Where cargo put the release binaries: CARGO_TARGET_DIR when set (relative to the workspace,
# as cargo reads it from run.sh), else the workspace's own target/.
BIN = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release"

PORTS = {
    "origin": 19000, "delay": 19001,
    "edge": 19080, "shield": 19081, "edge_disk": 19085, "edge_restart": 19086,
    "edge_admin": 19180, "shield_admin": 19181, "edge_disk_admin": 19185, "edge_restart_admin": 19186,
    "nginx": 19082, "static": 19084, "varnish": 19083,
}
SYSTEMS = ["ours", "nginx", "varnish"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_port(port, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not port_free(port):
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def http_get(url, timeout=120):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read(), dict(r.headers)


class Procs:
    def __init__(self, work):
        self.work, self.procs = work, {}

    def start(self, name, cmd, port=None, env=None):
        # Access logs off for every system (NGINX's too): the bench measures serving.
        env = env or dict(os.environ, RUST_LOG="warn")
        logf = open(self.work / f"{name}.log", "ab")
        p = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.procs[name] = p
        if port:
            wait_port(port, name)
        return p

    def stop(self, name, sig=signal.SIGINT):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name, signal.SIGKILL)


def peak_rss_kib(root_pid):
    """VmHWM summed over a process and its descendants (nginx and Varnish fork workers)."""
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        for c in map(int, children):
            if c not in pids:
                pids.add(c)
                frontier.append(c)
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- fixtures and systems

def make_fixtures(d, a):
    log("laying down fixtures")
    rnd = open("/dev/urandom", "rb")
    sizes = {"1k.bin": 1 << 10, "100k.bin": 100 << 10, "1m.bin": 1 << 20, "big.bin": a.stream_mib << 20}
    for name, size in sizes.items():
        with open(d / name, "wb") as f:
            left = size
            while left:
                chunk = rnd.read(min(left, 8 << 20))
                f.write(chunk)
                left -= len(chunk)
    (d / "slow").mkdir()
    with open(d / "slow" / "ten.bin", "wb") as f:
        f.write(rnd.read(10 << 20))
    for folder, count, size in (("keys", a.keys, 4 << 10), ("disk", a.disk_objects, 64 << 10), ("tiny", a.restart_objects, 512)):
        (d / folder).mkdir()
        block = rnd.read(size)
        for n in range(count):
            (d / folder / f"{n}.bin").write_bytes(block[:size - 8] + n.to_bytes(8, "little"))


def our_config(work, fixtures):
    cache = lambda name, memory: (
        f"  cache:\n    memory: {memory}\n    max_object: 256MiB\n"
        f"    disk:\n      path: {work}/cache/{name}\n      size: 4GiB\n"
    )
    common = "  threads: 2\n  grace_period: 0s\n"
    edge = lambda port, admin, name, memory: (
        f"edge:\n  listen: 127.0.0.1:{port}\n  admin: 127.0.0.1:{admin}\n  shields: [127.0.0.1:{PORTS['shield']}]\n"
        + common + cache(name, memory)
    )
    base = (
        f"origin:\n  listen: 127.0.0.1:{PORTS['origin']}\n  backend:\n    local:\n      root: {fixtures}\n"
        f"shield:\n  listen: 127.0.0.1:{PORTS['shield']}\n  admin: 127.0.0.1:{PORTS['shield_admin']}\n"
        f"  origin: 127.0.0.1:{PORTS['delay']}\n" + common + cache("shield", "1GiB")
        + "routes:\n  - prefix: /\n    ttl: 1h\n"
        + "logging:\n  format: text\n"
    )
    configs = {}
    for name, port, admin, memory in (
        ("edge", PORTS["edge"], PORTS["edge_admin"], "1GiB"),
        ("edge_disk", PORTS["edge_disk"], PORTS["edge_disk_admin"], "16MiB"),
        ("edge_restart", PORTS["edge_restart"], PORTS["edge_restart_admin"], "64MiB"),
    ):
        path = work / f"{name}.yaml"
        path.write_text(base + edge(port, admin, name, memory))
        configs[name] = path
    return configs


NGINX_CONF = """
user root;
worker_processes 2;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    proxy_cache_path {work}/nginx-cache levels=1:2 keys_zone=cdn:64m max_size=4g inactive=1h use_temp_path=off;
    upstream origin {{ server 127.0.0.1:{delay}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{nginx};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache cdn;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 60s;
            proxy_cache_valid 200 1h;
        }}
    }}
    server {{
        listen 127.0.0.1:{static};
        root {fixtures};
        open_file_cache max=20000;
    }}
}}
"""


def start_systems(procs, work, fixtures, configs):
    log("starting the origin, the delay relay, our tiers, NGINX and Varnish")
    procs.start("origin", [str(BIN / "origin-adapter"), "--config", str(configs["edge"])], PORTS["origin"])
    procs.start("delay", [sys.executable, str(HARNESS / "delay_proxy.py"), str(PORTS["delay"]), str(PORTS["origin"]), "50", str(work / "slow-requests")], PORTS["delay"])
    procs.start("shield", [str(BIN / "shield"), "--config", str(configs["edge"])], PORTS["shield"])
    procs.start("edge", [str(BIN / "edge-pop"), "--config", str(configs["edge"])], PORTS["edge"])
    procs.start("edge_disk", [str(BIN / "edge-pop"), "--config", str(configs["edge_disk"])], PORTS["edge_disk"])
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "nginx-tmp" / d).mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, fixtures=fixtures, **PORTS))
    procs.start("nginx", ["nginx", "-c", str(conf), "-e", str(work / "nginx-error.log")], PORTS["nginx"])
    (work / "varnish").mkdir(exist_ok=True)
    procs.start("varnish", ["varnishd", "-F", "-n", str(work / "varnish"), "-a", f"127.0.0.1:{PORTS['varnish']}",
                            "-b", f"127.0.0.1:{PORTS['delay']}", "-s", "malloc,2G", "-p", "thread_pools=2"], PORTS["varnish"])


def url(system, path):
    port = {"ours": PORTS["edge"], "ours_disk": PORTS["edge_disk"], "nginx": PORTS["nginx"], "varnish": PORTS["varnish"], "static": PORTS["static"]}[system]
    return f"http://127.0.0.1:{port}{path}"


# ---------------------------------------------------------------- measurements

def wrk(target, seconds, script=None, env_extra=None):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(HARNESS / script)]
    env = dict(os.environ, **(env_extra or {}))
    out = subprocess.run(cmd + [target], capture_output=True, text=True, env=env, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    lat = {p: float(v) * unit[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{target}: {errors.group(1)} error responses:\n{out}")
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99")}


def warm(system, paths, parallel=32):
    """Fetches every path once (and again, so each system has had its chance to store it)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(2):
            list(pool.map(lambda p: http_get(url(system, p)), paths))


def stream_mbps(target):
    out = subprocess.run(["taskset", "-c", "1", "curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", target],
                         capture_output=True, text=True, check=True).stdout
    return float(out) / 1e6


def slow_requests(work):
    return int((work / "slow-requests").read_text() or 0)


def restart_to_ready(procs, work, configs, objects):
    log(f"restart-to-ready: filling an edge with {objects} objects")
    procs.start("edge_restart", [str(BIN / "edge-pop"), "--config", str(configs["edge_restart"])], PORTS["edge_restart"])
    warm_paths = [f"/tiny/{n}.bin" for n in range(objects)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda p: http_get(f"http://127.0.0.1:{PORTS['edge_restart']}{p}"), warm_paths))
    procs.stop("edge_restart")
    started = time.perf_counter()
    procs.start("edge_restart", [str(BIN / "edge-pop"), "--config", str(configs["edge_restart"])])
    ready = f"http://127.0.0.1:{PORTS['edge_restart_admin']}/readyz"
    while True:
        try:
            if http_get(ready, timeout=1)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.005)
    took = time.perf_counter() - started
    status, _, headers = http_get(f"http://127.0.0.1:{PORTS['edge_restart']}/tiny/{objects - 1}.bin")
    assert headers.get("cache-status", "").startswith("edge-pop; hit"), headers
    procs.stop("edge_restart")
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one short run of everything, for breakage")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benches" / "RESULTS.md"))
    a = ap.parse_args()
    if a.quick:
        a.runs, a.seconds, a.keys, a.disk_objects, a.restart_objects, a.stream_mib, a.waiters = 1, 2, 1000, 400, 2000, 20, 50
    else:
        a.seconds, a.keys, a.disk_objects, a.restart_objects, a.stream_mib, a.waiters = 8, 10000, 2000, 100000, 100, 200
    busy = [name for name, port in PORTS.items() if not port_free(port)]
    if busy:
        raise SystemExit(f"ports in use: {busy}")
    work = Path(tempfile.mkdtemp(prefix="cdn-bench-"))
    fixtures = work / "origin"
    fixtures.mkdir()
    make_fixtures(fixtures, a)
    configs = our_config(work, fixtures)
    procs = Procs(work)
    results = {}
    def add(key, system, value):
        results.setdefault(key, {}).setdefault(system, []).append(value)
    try:
        start_systems(procs, work, fixtures, configs)
        sized = [("1 KiB", "/1k.bin"), ("100 KiB", "/100k.bin"), ("1 MiB", "/1m.bin")]
        keys = [f"/keys/{n}.bin" for n in range(a.keys)]
        disk = [f"/disk/{n}.bin" for n in range(a.disk_objects)]
        log("warming every system")
        for system in SYSTEMS:
            warm(system, [p for _, p in sized] + ["/big.bin"] + keys + (disk if system != "ours" else []))
        warm("ours_disk", disk)
        for run in range(a.runs):
            order = SYSTEMS if run % 2 == 0 else list(reversed(SYSTEMS))
            log(f"run {run + 1}/{a.runs}, order {order}")
            for label, path in sized:
                for system in order:
                    add(f"hit {label}", system, wrk(url(system, path), a.seconds))
            for system in order + ["static"]:
                add(f"stream {a.stream_mib} MiB", system, {"mbps": stream_mbps(url(system, "/big.bin"))})
            for system in order:
                add(f"{a.keys} keys of 4 KiB", system, wrk(url(system, "/"), a.seconds, "random_key.lua", {"KEYS": str(a.keys), "PREFIX": "/keys/"}))
            for system in order:
                target = "ours_disk" if system == "ours" else system
                add("disk-tier hits 64 KiB", system, wrk(url(target, "/"), a.seconds, "random_key.lua", {"KEYS": str(a.disk_objects), "PREFIX": "/disk/"}))
            for system in order:
                before = slow_requests(work)
                out = subprocess.run([sys.executable, str(HARNESS / "collapse.py"), url(system, f"/slow/ten.bin?run={run}-{system}"), str(a.waiters), str(10 << 20)],
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(out)
                time.sleep(0.2)
                r["origin_gets"] = slow_requests(work) - before
                add(f"collapse {a.waiters} x 10 MiB", system, r)
        for system, proc in (("ours", "edge"), ("nginx", "nginx"), ("varnish", "varnish")):
            add("peak RSS", system, {"mib": peak_rss_kib(procs.procs[proc].pid) / 1024})
        add("peak RSS", "ours (shield)", {"mib": peak_rss_kib(procs.procs["shield"].pid) / 1024})
        results["restart"] = {"ours": [{"seconds": restart_to_ready(procs, work, configs, a.restart_objects)}]}
    finally:
        procs.stop_all()
    report(results, a, work)
    shutil.rmtree(work, ignore_errors=True)


def med(values, field):
    xs = [v[field] for v in values if v.get(field) is not None]
    return statistics.median(xs) if xs else None


def report(results, a, work):
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    mem = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1]) // 1024 // 1024
    versions = {
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "varnish": subprocess.run(["varnishd", "-V"], capture_output=True, text=True).stderr.splitlines()[0],
        "wrk": "wrk " + subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
    }
    cmd = "benches/run.sh" + (" --quick" if a.quick else f" --runs {a.runs}")
    lines = [
        "# Edge vs NGINX vs Varnish",
        "",
        f"Produced by `{cmd}` on {time.strftime('%Y-%m-%d')}. Machine: {os.cpu_count()} cores ({cpu}), {mem} GiB, "
        f"Linux {platform.release()}; {versions['nginx']}, {versions['varnish']}, {versions['wrk']}.",
        "",
        f"Medians of {a.runs} run(s); systems alternate run by run (ours, nginx, varnish, then reversed). "
        "Load: `wrk -t1 -c64` pinned to CPU 1 with `taskset`; every server runs 2 worker threads "
        "unpinned on both cores, so client and server share the machine. Each system sits in front "
        "of the same origin-adapter; ours is edge-pop → shield → origin, NGINX is proxy_cache with "
        "proxy_cache_lock (tcp_nopush off), Varnish uses malloc storage. Ratios are ours / peer "
        "(above 1 is better for throughput, below 1 better for latency and memory).",
        "",
        "| scenario | metric | ours | nginx | varnish | ours/nginx | ours/varnish |",
        "|---|---|---|---|---|---|---|",
    ]
    def row(key, metric, field, fmt, better_high=True):
        got = results.get(key, {})
        o, n, v = (med(got.get(s, []), field) for s in ("ours", "nginx", "varnish"))
        cell = lambda x: "–" if x is None else fmt.format(x)
        ratio = lambda x, y: "–" if x is None or not y else f"{x / y:.2f}"
        lines.append(f"| {key} | {metric} | {cell(o)} | {cell(n)} | {cell(v)} | {ratio(o, n)} | {ratio(o, v)} |")
    for key in [k for k in results if k.startswith("hit ")] + [f"{a.keys} keys of 4 KiB", "disk-tier hits 64 KiB"]:
        row(key, "req/s", "rps", "{:,.0f}")
        row(key, "p50 ms", "p50_ms", "{:.2f}", False)
        row(key, "p99 ms", "p99_ms", "{:.2f}", False)
    skey = f"stream {a.stream_mib} MiB"
    row(skey, "MB/s (one curl)", "mbps", "{:,.0f}")
    static = med(results.get(skey, {}).get("static", []), "mbps")
    ckey = f"collapse {a.waiters} x 10 MiB"
    row(ckey, "origin GETs", "origin_gets", "{:.0f}", False)
    row(ckey, "waiters' TTFB median ms", "ttfb_median_ms", "{:.0f}", False)
    row(ckey, "waiters' TTFB p99 ms", "ttfb_p99_ms", "{:.0f}", False)
    row(ckey, "complete bodies", "complete", "{:.0f}")
    row("peak RSS", "MiB (edge / master+workers / all varnishd)", "mib", "{:.0f}", False)
    shield = med(results.get("peak RSS", {}).get("ours (shield)", []), "mib")
    restart = results["restart"]["ours"][0]["seconds"]
    ours_stream = med(results.get(skey, {}).get("ours", []), "mbps")
    lines += [
        "",
        f"- Static-file ceiling (nginx serving the file from disk, one curl): {static:,.0f} MB/s; "
        f"ours reaches {ours_stream / static:.0%} of it." if static and ours_stream else "",
        f"- Our shield's peak RSS: {shield:.0f} MiB." if shield else "",
        f"- Our restart-to-ready (`/readyz` 200) with {a.restart_objects:,} objects on disk: {restart * 1000:.0f} ms.",
        "- Disk-tier hits: our edge here has a 16 MiB memory tier in front of its disk, so most hits "
        "come from disk segments; NGINX serves from its cache files (page cache), Varnish from RAM.",
        "",
        "Raw per-run figures:",
        "",
        "```json",
        json.dumps(results, indent=1),
        "```",
    ]
    Path(a.out).write_text("\n".join(l for l in lines if l is not None) + "\n")
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
