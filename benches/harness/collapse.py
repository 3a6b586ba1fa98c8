#!/usr/bin/env python3
"""Fires N concurrent GETs for one URL and prints, as JSON, each waiter's time to first byte
(median, p99, max) and whether every body had the expected length.

    collapse.py URL N EXPECTED_LENGTH
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

url, n, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
parts = urllib.parse.urlsplit(url)
barrier = threading.Barrier(n)
ttfb, lengths = [None] * n, [None] * n


def fetch(i: int) -> None:
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.connect()
    barrier.wait()
    start = time.perf_counter()
    conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""))
    resp = conn.getresponse()
    first = resp.read(1)
    ttfb[i] = time.perf_counter() - start
    rest = resp.read()
    lengths[i] = len(first) + len(rest)
    conn.close()


threads = [threading.Thread(target=fetch, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
done = sorted(x for x in ttfb if x is not None)
print(json.dumps({
    "ttfb_median_ms": statistics.median(done) * 1000,
    "ttfb_p99_ms": done[int(len(done) * 0.99) - 1] * 1000,
    "ttfb_max_ms": done[-1] * 1000,
    "complete": sum(1 for x in lengths if x == expected),
    "requests": n,
}))
