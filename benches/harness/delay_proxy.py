#!/usr/bin/env python3
"""A TCP relay in front of the origin that holds back each response to a request whose path
starts with /slow/ by a fixed delay (the "origin with 50 ms of added latency" of the
collapsing benchmark); other requests pass straight through. It counts the requests it
relays for /slow/ paths and writes the count to a file on every change.

    delay_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS COUNT_FILE
"""
import asyncio
import collections
import sys

listen_port, upstream_port, delay_ms, count_file = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
slow_requests = 0


def record(data: bytes, pending: collections.deque) -> None:
    """Notes, for each request line in `data`, whether its response must be delayed."""
    global slow_requests
    for line in data.split(b"\r\n"):
        parts = line.split(b" ")
        if len(parts) == 3 and parts[2].startswith(b"HTTP/1.") and parts[0].isalpha():
            slow = parts[1].startswith(b"/slow/")
            pending.append(slow)
            if slow:
                slow_requests += 1
                with open(count_file, "w") as f:
                    f.write(str(slow_requests))


async def upstream_to_client(reader, writer, pending: collections.deque) -> None:
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            if data.startswith(b"HTTP/1.") and pending and pending.popleft():
                await asyncio.sleep(delay_ms / 1000)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def client_to_upstream(reader, writer, pending: collections.deque) -> None:
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            record(data, pending)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer) -> None:
    upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    pending: collections.deque = collections.deque()
    await asyncio.gather(
        client_to_upstream(client_reader, upstream_writer, pending),
        upstream_to_client(upstream_reader, client_writer, pending),
    )


async def main() -> None:
    with open(count_file, "w") as f:
        f.write("0")
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
