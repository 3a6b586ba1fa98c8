#!/usr/bin/env python3
"""Runs our edge side by side with NGINX (proxy_cache), Varnish (malloc) and Apache Traffic
Server in front of the same origin, alternating the systems run by run, and writes
benches/RESULTS.md.

Groups of rows (`--only` picks some; all by default):
  main  the rows against NGINX, Varnish and ATS over plain HTTP (hits, stream, keys, disk
        tier, collapsing, memory, restart), with each server's CPU time per GB served
  auth  our 1 KiB hits on a route with `auth: true` (a signed token on every request) against
        the same object on an open route, on one edge
  tls   hits and one stream over HTTPS: our edge's TLS listener against an NGINX `ssl` server
        in front of the same proxy_cache, same certificate and cipher suite; both over plain
        HTTP in the same run for reference

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
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
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
    "edge_auth": 19087, "edge_auth_admin": 19187,
    "edge_tls": 19088, "edge_tls_admin": 19188, "edge_https": 19089, "nginx_tls": 19090,
    "ats": 19091,
}
SYSTEMS = ["ours", "nginx", "varnish", "ats"]
PEERS = SYSTEMS[1:]
GROUPS = ["main", "auth", "tls"]
# Every HTTPS row uses one protocol, cipher suite and key exchange. Our edge's suites are
# rustls's defaults (not settable from its config) and rustls follows the client's order, so the
# clients (wrk, curl, openssl s_client) offer only these, through an OpenSSL config file, and
# NGINX is pinned to them as well. The certificate is ECDSA P-256, made at set-up.
TLS_VERSION, TLS_SUITE, TLS_GROUP = "TLSv1.3", "TLS_AES_128_GCM_SHA256", "X25519"
TLS = {}  # cert, key, client_conf: filled by make_cert
TLS_CLIENT_CONF = f"""openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = {TLS_VERSION}
MaxProtocol = {TLS_VERSION}
Ciphersuites = {TLS_SUITE}
Groups = {TLS_GROUP}
"""


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


def http_get(url, timeout=120, headers=None):
    ctx = ssl.create_default_context(cafile=TLS["cert"]) if url.startswith("https:") else None
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
        return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}


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


def process_tree(root_pid):
    """A process and its descendants (nginx and Varnish fork workers). A child is listed under
    the thread that forked it, so every thread's list is read."""
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        children = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children += (task / "children").read_text().split()
            except OSError:
                pass
        for c in map(int, children):
            if c not in pids:
                pids.add(c)
                frontier.append(c)
    return pids


def peak_rss_kib(root_pid):
    """VmHWM summed over a process and its descendants."""
    total = 0
    for pid in process_tree(root_pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_ns(root_pid):
    """(pid, tid) -> nanoseconds on a CPU, for every thread of a process tree (the first field of
    /proc/<pid>/task/<tid>/schedstat: exact, where /proc/<pid>/stat counts in 10 ms ticks, too
    coarse for a stream that lasts a fraction of a second)."""
    ns = {}
    for pid in process_tree(root_pid):
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                ns[(pid, task.name)] = int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return ns


def cpu_seconds_since(root_pid, before):
    """CPU seconds the tree spent since `before` (a cpu_ns reading). Thread by thread, so one that
    started in between counts whole; one that ended in between (an idle blocking-pool thread,
    NGINX's cache loader) drops out, having had little or nothing to do meanwhile."""
    after = cpu_ns(root_pid)
    return sum(t - before.get(k, 0) for k, t in after.items()) / 1e9


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
    # The 1 KiB object again under the route that needs a token.
    (d / "auth").mkdir()
    shutil.copyfile(d / "1k.bin", d / "auth" / "1k.bin")
    if "main" not in a.groups:
        return
    (d / "slow").mkdir()
    with open(d / "slow" / "ten.bin", "wb") as f:
        f.write(rnd.read(10 << 20))
    for folder, count, size in (("keys", a.keys, 4 << 10), ("disk", a.disk_objects, 64 << 10), ("tiny", a.restart_objects, 512)):
        (d / folder).mkdir()
        block = rnd.read(size)
        for n in range(count):
            (d / folder / f"{n}.bin").write_bytes(block[:size - 8] + n.to_bytes(8, "little"))


def our_config(work, fixtures, auth_key=None, tls=True):
    """One file per edge; origin-adapter and the shield read the first (`edge`). `auth_key`: the
    public key `edge_auth` checks tokens against; `tls`: give `edge_tls` its TLS listener."""
    cache = lambda name, memory: (
        f"  cache:\n    memory: {memory}\n    max_object: 256MiB\n"
        f"    disk:\n      path: {work}/cache/{name}\n      size: 4GiB\n"
    )
    common = "  threads: 2\n  grace_period: 0s\n"
    edge = lambda port, admin, name, memory: (
        f"edge:\n  listen: 127.0.0.1:{port}\n  admin: 127.0.0.1:{admin}\n  shields: [127.0.0.1:{PORTS['shield']}]\n"
        + common + cache(name, memory)
    )
    tiers = (
        f"origin:\n  listen: 127.0.0.1:{PORTS['origin']}\n  backend:\n    local:\n      root: {fixtures}\n"
        f"shield:\n  listen: 127.0.0.1:{PORTS['shield']}\n  admin: 127.0.0.1:{PORTS['shield_admin']}\n"
        f"  origin: 127.0.0.1:{PORTS['delay']}\n" + common + cache("shield", "1GiB")
    )
    # The whole query is in the key, as in the peers' default keys: the collapse row asks for
    # `/slow/ten.bin?run=<run>-<system>` so that each run is a miss everywhere.
    routes = "routes:\n  - prefix: /\n    ttl: 1h\n    query: keep\n"
    logging = "logging:\n  format: text\n"
    base = tiers + routes + logging
    configs = {}
    for name, port, admin, memory in (
        ("edge", PORTS["edge"], PORTS["edge_admin"], "1GiB"),
        ("edge_disk", PORTS["edge_disk"], PORTS["edge_disk_admin"], "16MiB"),
        ("edge_restart", PORTS["edge_restart"], PORTS["edge_restart_admin"], "64MiB"),
    ):
        path = work / f"{name}.yaml"
        path.write_text(base + edge(port, admin, name, memory))
        configs[name] = path
    if auth_key:
        # The open route of the other edges, and /auth/ behind a signed token (no API keys, so
        # no entitlement document is ever fetched).
        auth_routes = "routes:\n  - prefix: /auth/\n    ttl: 1h\n    auth: true\n  - prefix: /\n    ttl: 1h\n"
        auth = f"auth:\n  token_keys:\n    - id: bench\n      public_key: {auth_key}\n"
        path = work / "edge_auth.yaml"
        path.write_text(tiers + auth_routes + auth + logging + edge(PORTS["edge_auth"], PORTS["edge_auth_admin"], "edge_auth", "1GiB"))
        configs["edge_auth"] = path
    if TLS:
        listener = (
            f"  tls:\n    listen: 127.0.0.1:{PORTS['edge_https']}\n"
            f"    certificates:\n      - cert: {TLS['cert']}\n        key: {TLS['key']}\n    http2: true\n"
        ) if tls else ""
        path = work / "edge_tls.yaml"
        path.write_text(base + edge(PORTS["edge_tls"], PORTS["edge_tls_admin"], "edge_tls", "1GiB") + listener)
        configs["edge_tls"] = path
    return configs


def make_token(work):
    """A key pair and a token for /auth/, made the way an operator makes them."""
    keys = work / "keys"
    admin = str(BIN / "cdn-admin")
    subprocess.run([admin, "keygen", "--id", "bench", "--out", str(keys)], check=True, capture_output=True)
    token = subprocess.run([admin, "token", "--key", str(keys / "bench.key.pem"), "--id", "bench",
                            "--subject", "bench", "--scope", "path:/*", "--ttl", "1d"],
                           check=True, capture_output=True, text=True).stdout.strip()
    return keys / "bench.pub.pem", token


def make_cert(work):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 (our edge and NGINX serve the same
    one), and the OpenSSL config that pins the clients' protocol, cipher suite and group."""
    cert, key = work / "tls-cert.pem", work / "tls-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    conf = work / "openssl-client.cnf"
    conf.write_text(TLS_CLIENT_CONF)
    TLS.update(cert=str(cert), key=str(key), client_conf=str(conf))


def edge_takes_tls(configs):
    """Whether this edge-pop has a TLS listener: its `--check` accepts `edge.tls`."""
    r = subprocess.run([str(BIN / "edge-pop"), "--config", str(configs["edge_tls"]), "--check"], capture_output=True, text=True)
    if r.returncode == 0:
        return True
    if "tls" in r.stderr and "unknown field" in r.stderr:
        log(f"this edge-pop has no TLS listener ({r.stderr.strip()}): our HTTPS rows are left empty")
        return False
    raise SystemExit(f"edge_tls config refused: {r.stderr}")


# NGINX's cache in front of the relay, the same for its plain and its TLS server.
CACHE_LOCATION = """\
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache cdn;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 60s;
            proxy_cache_valid 200 1h;
        }}
"""

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
""" + CACHE_LOCATION + """    }}
    server {{
        listen 127.0.0.1:{static};
        root {fixtures};
        open_file_cache max=20000;
    }}
{tls_server}}}
"""

# The same proxy_cache behind `listen … ssl` (no kTLS: NGINX encrypts in user space, so
# `sendfile` does not apply). Its cache entries are its own ($scheme is in the key).
NGINX_TLS_SERVER = """
    server {{
        listen 127.0.0.1:{nginx_tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols {version};
        ssl_conf_command Ciphersuites {suite};
        ssl_ecdh_curve {group};
""" + CACHE_LOCATION + """    }}
"""


# Apache Traffic Server: Debian's defaults (/etc/trafficserver, copied to the work folder) with
# these records replaced. `{ats}` is its folder there.
ATS_RECORDS = [
    # Our port only (Debian's is 8080 on IPv4 and IPv6), on loopback.
    ("proxy.config.http.server_ports", "STRING {port}:ip-in=127.0.0.1"),
    # Keep the user it was started as: it refuses to switch to root by name, and the Debian
    # default (user trafficserver) could not write to the work folder.
    ("proxy.config.admin.user_id", "STRING #-1"),
    # No crash-log helper process beside it (it would look user #-1 up and fail).
    ("proxy.config.crash_log_helper", "STRING NULL"),
    # Everything it writes stays in the work folder.
    ("proxy.config.local_state_dir", "STRING {ats}/run"),
    ("proxy.config.log.logfile_dir", "STRING {ats}/log"),
    ("proxy.config.hostdb.storage_path", "STRING {ats}/run"),
    ("proxy.config.body_factory.template_sets_dir", "STRING {ats}/etc/body_factory"),
    # 2 worker threads like the other servers, on both cores (no hwloc binding).
    ("proxy.config.exec_thread.autoconfig", "INT 0"),
    ("proxy.config.exec_thread.limit", "INT 2"),
    ("proxy.config.exec_thread.affinity", "INT 0"),
    # Access log off, as for every system.
    ("proxy.config.log.logging_enabled", "INT 0"),
    # A reverse proxy: only what remap.config maps is served.
    ("proxy.config.reverse_proxy.enabled", "INT 1"),
    ("proxy.config.url_remap.remap_required", "INT 1"),
    # A 1 GiB RAM cache (our edge's memory tier) that takes objects up to our edge's max_object
    # (Debian's cut-off is 4 MiB), over the cache file; no object size limit.
    ("proxy.config.cache.ram_cache.size", "INT 1073741824"),
    ("proxy.config.cache.ram_cache_cutoff", "INT 268435456"),
    ("proxy.config.cache.max_doc_size", "INT 0"),
    # Listen only once the cache is up, and not at all without one: no cacheless runs.
    ("proxy.config.http.wait_for_cache", "INT 2"),
    # Collapsing (the collapse row): readers follow the one writer (read-while-writer, with
    # background fill always allowed so the fill survives its first client), and a request that
    # misses the write lock retries its cache read (fail action 5) every 10 ms for up to 2 s
    # instead of going to the origin itself.
    ("proxy.config.cache.enable_read_while_writer", "INT 1"),
    ("proxy.config.http.background_fill_active_timeout", "INT 0"),
    ("proxy.config.http.background_fill_completed_threshold", "FLOAT 0.0"),
    ("proxy.config.http.cache.open_write_fail_action", "INT 5"),
    ("proxy.config.http.cache.max_open_read_retries", "INT 200"),
    ("proxy.config.http.cache.open_read_retry_time", "INT 10"),
]


def ats_config(work):
    """ATS's own config folder (PROXY_CONFIG_CONFIG_DIR), runtime, log and 4 GiB cache file."""
    ats = work / "ats"
    shutil.copytree("/etc/trafficserver", ats / "etc")
    for d in ("run", "log"):
        (ats / d).mkdir()
    ours = {name: value.format(ats=ats, port=PORTS["ats"]) for name, value in ATS_RECORDS}
    records = ats / "etc" / "records.config"
    kept = [l for l in records.read_text().splitlines() if not (l.split()[1:2] and l.split()[1] in ours)]
    records.write_text("\n".join(kept + [f"CONFIG {name} {value}" for name, value in ours.items()]) + "\n")
    (ats / "etc" / "remap.config").write_text(f"map / http://127.0.0.1:{PORTS['delay']}/\n")
    # A cache span that is a file must exist at its size; sparse, it takes only what is stored.
    with open(ats / "cache", "wb") as f:
        f.truncate(4 << 30)
    (ats / "etc" / "storage.config").write_text(f"{ats / 'cache'} 4G\n")
    return ats / "etc"


def start_systems(procs, work, fixtures, configs, groups, tls_ok):
    log(f"starting the origin, the delay relay, our tiers and the peers for: {', '.join(groups)}")
    procs.start("origin", [str(BIN / "origin-adapter"), "--config", str(configs["edge"])], PORTS["origin"])
    procs.start("delay", [sys.executable, str(HARNESS / "delay_proxy.py"), str(PORTS["delay"]), str(PORTS["origin"]), "50", str(work / "slow-requests")], PORTS["delay"])
    procs.start("shield", [str(BIN / "shield"), "--config", str(configs["edge"])], PORTS["shield"])
    if "main" in groups:
        procs.start("edge", [str(BIN / "edge-pop"), "--config", str(configs["edge"])], PORTS["edge"])
        procs.start("edge_disk", [str(BIN / "edge-pop"), "--config", str(configs["edge_disk"])], PORTS["edge_disk"])
    if "auth" in groups:
        procs.start("edge_auth", [str(BIN / "edge-pop"), "--config", str(configs["edge_auth"])], PORTS["edge_auth"])
    if "tls" in groups:
        procs.start("edge_tls", [str(BIN / "edge-pop"), "--config", str(configs["edge_tls"])], PORTS["edge_tls"])
        if tls_ok:
            wait_port(PORTS["edge_https"], "edge_tls (TLS)")
    if "main" not in groups and "tls" not in groups:
        return
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "nginx-tmp" / d).mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    tls_server = NGINX_TLS_SERVER.format(version=TLS_VERSION, suite=TLS_SUITE, group=TLS_GROUP, **TLS, **PORTS) if "tls" in groups else ""
    conf.write_text(NGINX_CONF.format(work=work, fixtures=fixtures, tls_server=tls_server, **PORTS))
    procs.start("nginx", ["nginx", "-c", str(conf), "-e", str(work / "nginx-error.log")], PORTS["nginx"])
    if "tls" in groups:
        wait_port(PORTS["nginx_tls"], "nginx (TLS)")
    if "main" not in groups:
        return
    (work / "varnish").mkdir(exist_ok=True)
    procs.start("varnish", ["varnishd", "-F", "-n", str(work / "varnish"), "-a", f"127.0.0.1:{PORTS['varnish']}",
                            "-b", f"127.0.0.1:{PORTS['delay']}", "-s", "malloc,2G", "-p", "thread_pools=2"], PORTS["varnish"])
    # traffic_server alone, in the foreground (no traffic_manager); it reads records.config
    # from the folder the environment names.
    ats_etc = ats_config(work)
    procs.start("ats", ["traffic_server"], PORTS["ats"], env=dict(os.environ, PROXY_CONFIG_CONFIG_DIR=str(ats_etc)))


# system -> the listener its requests go to; `https` marks the TLS ones.
TARGETS = {
    "ours": "edge", "ours_disk": "edge_disk", "nginx": "nginx", "varnish": "varnish", "ats": "ats", "static": "static",
    "auth_off": "edge_auth", "auth_on": "edge_auth",
    "ours_plain": "edge_tls", "ours_tls": "https edge_https", "nginx_tls": "https nginx_tls",
}
# The token auth_on sends (make_token).
AUTH = {}
# system -> the process (of Procs) whose tree serves it, whose CPU time is measured. Ours: the
# edge alone, as hits never reach the shield. The peers: all their processes.
SERVERS = {
    "ours": "edge", "ours_disk": "edge_disk", "nginx": "nginx", "varnish": "varnish", "ats": "ats", "static": "nginx",
    "ours_plain": "edge_tls", "ours_tls": "edge_tls", "nginx_tls": "nginx",
}


def url(system, path):
    scheme, _, listener = TARGETS[system].rpartition(" ")
    if system == "auth_on":
        path = "/auth" + path
    return f"{scheme or 'http'}://127.0.0.1:{PORTS[listener]}{path}"


def headers(system):
    return {"Authorization": f"Bearer {AUTH['token']}"} if system == "auth_on" else {}


def client_env(target):
    """What wrk and curl run with: the pinned OpenSSL client config for HTTPS."""
    return {"OPENSSL_CONF": TLS["client_conf"]} if target.startswith("https:") else {}


# ---------------------------------------------------------------- measurements

def wrk(target, seconds, script=None, env_extra=None, header=None):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(HARNESS / script)]
    for k, v in (header or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    env = dict(os.environ, **client_env(target), **(env_extra or {}))
    out = subprocess.run(cmd + [target], capture_output=True, text=True, env=env, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # "N requests in 8.00s, 1.13GB read": wrk's units are 1024-based; the bytes include
    # the response headers.
    requests, amount, prefix = re.search(r"(\d+) requests in \S+, ([\d.]+)([KMGTP]?)B read", out).groups()
    read = float(amount) * 1024 ** " KMGTP".index(prefix or " ")
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    lat = {p: float(v) * unit[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{target}: {errors.group(1)} error responses:\n{out}")
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"), "requests": int(requests), "bytes": read}


def warm(system, paths, parallel=32):
    """Fetches every path once (and again, so each system has had its chance to store it)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(2):
            list(pool.map(lambda p: http_get(url(system, p), headers=headers(system)), paths))


def stream(target, size):
    """One curl of the `size`-byte object: MB/s, and its size as the bytes served."""
    tls = ["--cacert", TLS["cert"], "--tlsv1.3", "--tls13-ciphers", TLS_SUITE] if target.startswith("https:") else []
    out = subprocess.run(["taskset", "-c", "1", "curl", "-s", "--http1.1", *tls, "-o", "/dev/null", "-w", "%{speed_download}", target],
                         capture_output=True, text=True, check=True, env=dict(os.environ, **client_env(target))).stdout
    return {"mbps": float(out) / 1e6, "bytes": size}


def with_cpu(procs, system, measure):
    """Runs `measure` (a wrk or stream result, with the bytes served) and adds the CPU time the
    serving process tree spent meanwhile, per GB (10^9 bytes) served."""
    pid = procs.procs[SERVERS[system]].pid
    before = cpu_ns(pid)
    r = measure()
    r["cpu_s"] = cpu_seconds_since(pid, before)
    r["cpu_s_per_gb"] = r["cpu_s"] / (r["bytes"] / 1e9) if r["bytes"] else None
    return r


def assert_hit(system, path):
    _, _, h = http_get(url(system, path), headers=headers(system))
    if system.startswith(("ours", "auth")) and not h.get("cache-status", "").startswith("edge-pop; hit"):
        raise SystemExit(f"{system} {path}: not a hit after warming: {h}")


def assert_aged(system, paths):
    """That `system` (a peer with no cache-status header) serves `paths` from its cache: once
    they were stored over a second ago, a hit's Age is at least 1, while a response fetched
    from the origin just now leaves with Age 0."""
    time.sleep(1.1)
    for path in paths:
        _, _, h = http_get(url(system, path))
        if int(h.get("age", 0)) < 1:
            raise SystemExit(f"{system} {path}: not a hit after warming: {h}")


def negotiated(system):
    """Protocol, cipher suite and key exchange a pinned client gets from `system`, checked."""
    port = PORTS[TARGETS[system].split()[-1]]
    r = subprocess.run(["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{port}", "-CAfile", TLS["cert"]],
                       input="", capture_output=True, text=True, timeout=10, env=dict(os.environ, OPENSSL_CONF=TLS["client_conf"]))
    got = dict(re.findall(r"^(Protocol version|Ciphersuite|Server Temp Key|Verification): (.*)$", r.stderr, re.M))
    if got.get("Ciphersuite") != TLS_SUITE or got.get("Protocol version") != TLS_VERSION or got.get("Verification") != "OK":
        raise SystemExit(f"{system}: unexpected TLS session:\n{r.stderr}")
    return f"{got['Protocol version']} {got['Ciphersuite']}, {got.get('Server Temp Key', '?')}"


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
    ap.add_argument("--only", help=f"comma-separated groups of rows to run, of {','.join(GROUPS)} (default: all)")
    ap.add_argument("--out", help="the report (default benches/RESULTS.md; with --only, benches/RESULTS-<groups>.md)")
    a = ap.parse_args()
    a.groups = GROUPS if not a.only else [g for g in GROUPS if g in a.only.split(",")]
    unknown = set(a.only.split(",")) - set(GROUPS) if a.only else set()
    if unknown or not a.groups:
        raise SystemExit(f"--only takes some of {','.join(GROUPS)}, not {a.only!r}")
    if not a.out:
        a.out = ROOT / "benches" / ("RESULTS.md" if a.groups == GROUPS else f"RESULTS-{'-'.join(a.groups)}.md")
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
    auth_key = None
    if "auth" in a.groups:
        auth_key, AUTH["token"] = make_token(work)
    if "tls" in a.groups:
        make_cert(work)
    configs = our_config(work, fixtures, auth_key)
    tls_ok = "tls" in a.groups and edge_takes_tls(configs)
    if "tls" in a.groups and not tls_ok:
        configs = our_config(work, fixtures, auth_key, tls=False)
    procs = Procs(work)
    results = {}
    def add(key, system, value):
        results.setdefault(key, {}).setdefault(system, []).append(value)
    tls_systems = (["ours_tls"] if tls_ok else []) + ["nginx_tls", "ours_plain", "nginx"]
    try:
        start_systems(procs, work, fixtures, configs, a.groups, tls_ok)
        sized = [("1 KiB", "/1k.bin"), ("100 KiB", "/100k.bin"), ("1 MiB", "/1m.bin")]
        keys = [f"/keys/{n}.bin" for n in range(a.keys)]
        disk = [f"/disk/{n}.bin" for n in range(a.disk_objects)]
        log("warming every system")
        if "main" in a.groups:
            for system in SYSTEMS:
                warm(system, [p for _, p in sized] + ["/big.bin"] + keys + (disk if system != "ours" else []))
            warm("ours_disk", disk)
            # What ATS stores depends on its records: one object of each kind must be a hit
            # before it is measured.
            assert_aged("ats", [p for _, p in sized] + ["/big.bin", keys[-1], disk[-1]])
        if "auth" in a.groups:
            try:
                status = http_get(url("auth_off", "/auth/1k.bin"))[0]
            except urllib.error.HTTPError as e:
                status = e.code
            if status != 401:
                raise SystemExit(f"/auth/1k.bin without a token answered {status}, not 401")
            for system in ("auth_off", "auth_on"):
                warm(system, ["/1k.bin"])
                assert_hit(system, "/1k.bin")
        if "tls" in a.groups:
            for system in tls_systems:
                warm(system, [p for _, p in sized] + ["/big.bin"])
                for _, path in sized:
                    assert_hit(system, path)
            for system in tls_systems:
                if system.endswith("_tls"):
                    results.setdefault("tls session", {})[system] = negotiated(system)
        for run in range(a.runs):
            if "main" in a.groups:
                run_main(a, run, work, procs, sized, add)
            if "auth" in a.groups:
                order = ["auth_off", "auth_on"] if run % 2 == 0 else ["auth_on", "auth_off"]
                log(f"run {run + 1}/{a.runs}, auth, order {order}")
                for system in order:
                    add("auth hit 1 KiB", system, wrk(url(system, "/1k.bin"), a.seconds, header=headers(system)))
            if "tls" in a.groups:
                order = tls_systems if run % 2 == 0 else list(reversed(tls_systems))
                log(f"run {run + 1}/{a.runs}, tls, order {order}")
                for label, path in sized:
                    for system in order:
                        add(f"tls hit {label}", system, with_cpu(procs, system, lambda: wrk(url(system, path), a.seconds)))
                for system in order:
                    add(f"tls stream {a.stream_mib} MiB", system, with_cpu(procs, system, lambda: stream(url(system, "/big.bin"), a.stream_mib << 20)))
        if "main" in a.groups:
            for system in SYSTEMS:
                add("peak RSS", system, {"mib": peak_rss_kib(procs.procs[SERVERS[system]].pid) / 1024})
            add("peak RSS", "ours (shield)", {"mib": peak_rss_kib(procs.procs["shield"].pid) / 1024})
            results["restart"] = {"ours": [{"seconds": restart_to_ready(procs, work, configs, a.restart_objects)}]}
    finally:
        procs.stop_all()
    report(results, a, tls_ok)
    shutil.rmtree(work, ignore_errors=True)


def run_main(a, run, work, procs, sized, add):
    """One run of the rows against NGINX, Varnish and ATS."""
    order = SYSTEMS if run % 2 == 0 else list(reversed(SYSTEMS))
    log(f"run {run + 1}/{a.runs}, order {order}")
    for label, path in sized:
        for system in order:
            add(f"hit {label}", system, with_cpu(procs, system, lambda: wrk(url(system, path), a.seconds)))
    for system in order + ["static"]:
        add(f"stream {a.stream_mib} MiB", system, with_cpu(procs, system, lambda: stream(url(system, "/big.bin"), a.stream_mib << 20)))
    for system in order:
        add(f"{a.keys} keys of 4 KiB", system, with_cpu(procs, system, lambda: wrk(
            url(system, "/"), a.seconds, "random_key.lua", {"KEYS": str(a.keys), "PREFIX": "/keys/"})))
    for system in order:
        target = "ours_disk" if system == "ours" else system
        add("disk-tier hits 64 KiB", system, with_cpu(procs, target, lambda: wrk(
            url(target, "/"), a.seconds, "random_key.lua", {"KEYS": str(a.disk_objects), "PREFIX": "/disk/"})))
    for system in order:
        before = slow_requests(work)
        out = subprocess.run([sys.executable, str(HARNESS / "collapse.py"), url(system, f"/slow/ten.bin?run={run}-{system}"), str(a.waiters), str(10 << 20)],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        time.sleep(0.2)
        r["origin_gets"] = slow_requests(work) - before
        add(f"collapse {a.waiters} x 10 MiB", system, r)


def med(values, field):
    xs = [v[field] for v in values if v.get(field) is not None]
    return statistics.median(xs) if xs else None


def spread(values, field, fmt):
    """`median (min–max)` over the runs, or the one value."""
    xs = [v[field] for v in values if v.get(field) is not None]
    if not xs:
        return "–"
    m = fmt.format(statistics.median(xs))
    return m if len(xs) == 1 else f"{m} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def report(results, a, tls_ok):
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    mem = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1]) // 1024 // 1024
    versions = {
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "varnish": subprocess.run(["varnishd", "-V"], capture_output=True, text=True).stderr.splitlines()[0],
        "ats": "Apache Traffic Server " + re.search(r"Traffic Server ([\d.]+)", subprocess.run(
            ["traffic_server", "-V"], capture_output=True, text=True).stdout).group(1),
        "wrk": "wrk " + subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
        "openssl": subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip(),
    }
    cmd = "benches/run.sh" + (" --quick" if a.quick else f" --runs {a.runs}") + (f" --only {','.join(a.groups)}" if a.only else "")
    lines = [
        "# Edge vs NGINX vs Varnish vs ATS" if "main" in a.groups else "# Edge: auth and TLS",
        "",
        f"Produced by `{cmd}` on {time.strftime('%Y-%m-%d')}. Machine: {os.cpu_count()} cores ({cpu}), {mem} GiB, "
        f"Linux {platform.release()}; {versions['nginx']}, {versions['varnish']}, {versions['ats']}, {versions['wrk']}, {versions['openssl']}.",
        "",
    ]
    if "main" in a.groups:
        lines += main_lines(results, a)
    if "auth" in a.groups or "tls" in a.groups:
        lines += auth_tls_lines(results, a, tls_ok)
    lines += [
        "",
        "Raw per-run figures:",
        "",
        "```json",
        json.dumps(results, indent=1),
        "```",
    ]
    Path(a.out).write_text("\n".join(l for l in lines if l is not None) + "\n")
    log(f"wrote {a.out}")


def main_lines(results, a):
    lines = [
        f"Medians of {a.runs} run(s); systems alternate run by run (ours, nginx, varnish, ats, then reversed). "
        "Load: `wrk -t1 -c64` pinned to CPU 1 with `taskset`; every server runs 2 worker threads "
        "unpinned on both cores, so client and server share the machine. Each system sits in front "
        "of the same origin-adapter; ours is edge-pop → shield → origin, NGINX is proxy_cache with "
        "proxy_cache_lock (tcp_nopush off), Varnish uses malloc storage, ATS (traffic_server alone) "
        "a 1 GiB RAM cache over a 4 GiB cache file, with read-while-writer and read retries on a "
        "missed write lock. CPU s per GB: CPU time of the serving processes' threads (our "
        "edge-pop alone, which serves hits without the shield; every process of each peer) during "
        "the measurement, from the kernel's per-thread schedstat, per 10^9 bytes served (wrk's "
        "bytes read, headers included; the object for the stream). "
        "Ratios are ours / peer, and ours / the best of the peers on that row "
        "(above 1 is better for throughput, below 1 better for latency, memory and CPU).",
        "",
        "| scenario | metric | ours | nginx | varnish | ats | ours/nginx | ours/varnish | ours/ats | ours/best peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    def row(key, metric, field, fmt, better_high=True):
        got = results.get(key, {})
        m = {s: med(got.get(s, []), field) for s in SYSTEMS}
        cell = lambda x: "–" if x is None else fmt.format(x)
        ratio = lambda x, y: "–" if x is None or not y else f"{x / y:.2f}"
        measured = [s for s in PEERS if m[s] is not None]
        best = (max if better_high else min)(measured, key=m.get) if measured else None
        vs_best = f"{ratio(m['ours'], m[best])} ({best})" if best else "–"
        lines.append(f"| {key} | {metric} | " + " | ".join(cell(m[s]) for s in SYSTEMS) + " | "
                     + " | ".join(ratio(m["ours"], m[s]) for s in PEERS) + f" | {vs_best} |")
    cpu_row = lambda key: row(key, "CPU s per GB", "cpu_s_per_gb", "{:.2f}", False)
    for key in [k for k in results if k.startswith("hit ")] + [f"{a.keys} keys of 4 KiB", "disk-tier hits 64 KiB"]:
        row(key, "req/s", "rps", "{:,.0f}")
        row(key, "p50 ms", "p50_ms", "{:.2f}", False)
        row(key, "p99 ms", "p99_ms", "{:.2f}", False)
        cpu_row(key)
    skey = f"stream {a.stream_mib} MiB"
    row(skey, "MB/s (one curl)", "mbps", "{:,.0f}")
    cpu_row(skey)
    static = med(results.get(skey, {}).get("static", []), "mbps")
    static_cpu = med(results.get(skey, {}).get("static", []), "cpu_s_per_gb")
    ckey = f"collapse {a.waiters} x 10 MiB"
    row(ckey, "origin GETs", "origin_gets", "{:.0f}", False)
    row(ckey, "waiters' TTFB median ms", "ttfb_median_ms", "{:.0f}", False)
    row(ckey, "waiters' TTFB p99 ms", "ttfb_p99_ms", "{:.0f}", False)
    row(ckey, "complete bodies", "complete", "{:.0f}")
    row("peak RSS", "MiB (edge / master+workers / all varnishd / traffic_server)", "mib", "{:.0f}", False)
    shield = med(results.get("peak RSS", {}).get("ours (shield)", []), "mib")
    restart = results["restart"]["ours"][0]["seconds"]
    ours_stream = med(results.get(skey, {}).get("ours", []), "mbps")
    lines += [
        "",
        f"- Static-file ceiling (nginx serving the file from disk, one curl): {static:,.0f} MB/s "
        f"({static_cpu:.2f} CPU s per GB); ours reaches {ours_stream / static:.0%} of it." if static and ours_stream else "",
        f"- Our shield's peak RSS: {shield:.0f} MiB." if shield else "",
        f"- Our restart-to-ready (`/readyz` 200) with {a.restart_objects:,} objects on disk: {restart * 1000:.0f} ms.",
        "- Disk-tier hits: our edge here has a 16 MiB memory tier in front of its disk, so most hits "
        "come from disk segments; NGINX serves from its cache files (page cache), Varnish from RAM, "
        "ATS from its RAM cache (the objects fit in it).",
        "",
    ]
    return lines


def auth_tls_lines(results, a, tls_ok):
    ratio = lambda x, y: "–" if x is None or not y else f"{x / y:.2f}"
    lines = [
        "## Auth and TLS",
        "",
        f"Medians of {a.runs} run(s), with the spread (min–max) in parentheses; the systems of each "
        "table alternate run by run (in order, then reversed). Load: `wrk -t1 -c64` pinned to CPU 1 "
        "with `taskset`; the servers run 2 threads unpinned on both cores. Ratios above 1 are better "
        "for req/s and MB/s, below 1 for latency and CPU.",
        "",
    ]
    if "auth" in a.groups:
        got = results.get("auth hit 1 KiB", {})
        lines += [
            "Auth on vs off, one edge (edge-pop → shield): the same 1 KiB object on an open route "
            "(`/`) and on a route with `auth: true` (`/auth/`), every request of the latter carrying "
            "`Authorization: Bearer <token>` (an Ed25519-signed token from `cdn-admin token`, "
            "scope `path:/*`). All hits.",
            "",
            "| 1 KiB hits | auth off | auth on | on/off |",
            "|---|---|---|---|",
        ]
        for metric, field, fmt in (("req/s", "rps", "{:,.0f}"), ("p50 ms", "p50_ms", "{:.2f}"), ("p99 ms", "p99_ms", "{:.2f}")):
            off, on = got.get("auth_off", []), got.get("auth_on", [])
            lines.append(f"| {metric} | {spread(off, field, fmt)} | {spread(on, field, fmt)} | {ratio(med(on, field), med(off, field))} |")
        lines.append("")
    if "tls" in a.groups:
        sessions = results.get("tls session", {})
        lines += [
            "Over TLS: our edge's TLS listener against an NGINX `listen … ssl` server in front of the "
            "same `proxy_cache` setup; both also over plain HTTP in the same run (ours: the same "
            "edge's plain listener; NGINX: its plain server, same cache). One self-signed "
            f"ECDSA P-256 certificate for both; {TLS_VERSION} with {TLS_SUITE} and {TLS_GROUP} on "
            "both (NGINX pinned to them; our edge's suites are rustls's defaults, and the clients "
            f"offer only these). Negotiated: ours {sessions.get('ours_tls', 'not measured')}; "
            f"NGINX {sessions.get('nginx_tls', '?')}. HTTP/1.1 on every connection (wrk sends no "
            "ALPN, curl is told `--http1.1`); wrk keeps its 64 connections, so handshakes do not "
            "count. NGINX over TLS encrypts in user space (no kTLS), so `sendfile` does not apply. "
            "CPU s per GB: CPU time of our edge-pop (its TLS and plain listeners are one process) and "
            "of all NGINX's processes (one NGINX serves both) during the measurement, per 10^9 bytes "
            "served (wrk's bytes read, headers included; the object for the stream).",
            "",
        ]
        if not tls_ok:
            lines += ["**Our TLS columns are empty: the edge-pop measured has no TLS listener.**", ""]
        lines += [
            "| scenario | metric | ours TLS | NGINX TLS | ours/NGINX TLS | ours plain | NGINX plain | ours TLS/plain | NGINX TLS/plain |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        cpu = ("CPU s per GB", "cpu_s_per_gb", "{:.2f}")
        rows = [(f"tls hit {label}", m, f, fmt) for label in ("1 KiB", "100 KiB", "1 MiB")
                for m, f, fmt in (("req/s", "rps", "{:,.0f}"), ("p50 ms", "p50_ms", "{:.2f}"), ("p99 ms", "p99_ms", "{:.2f}"), cpu)]
        rows += [(f"tls stream {a.stream_mib} MiB", "MB/s (one curl)", "mbps", "{:,.0f}"), (f"tls stream {a.stream_mib} MiB", *cpu)]
        for key, metric, field, fmt in rows:
            got = results.get(key, {})
            v = {s: got.get(s, []) for s in ("ours_tls", "nginx_tls", "ours_plain", "nginx")}
            m = {s: med(x, field) for s, x in v.items()}
            lines.append(
                f"| {key.removeprefix('tls ')} | {metric} | {spread(v['ours_tls'], field, fmt)} | {spread(v['nginx_tls'], field, fmt)} "
                f"| {ratio(m['ours_tls'], m['nginx_tls'])} | {spread(v['ours_plain'], field, fmt)} | {spread(v['nginx'], field, fmt)} "
                f"| {ratio(m['ours_tls'], m['ours_plain'])} | {ratio(m['nginx_tls'], m['nginx'])} |")
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
