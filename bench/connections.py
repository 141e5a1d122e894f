#!/usr/bin/env python3
"""Connection-scale driver for bench/connections.sh (loopback only, bounded). `idle PORT N HOST`:
opens N keep-alive connections, sends one request on each (all must answer 200), keeps them
open and idle until stdin closes. `inflight PORT N HOST`: sends N requests at once, each on its
own connection, and waits for all answers; prints how many answered 200. Measures no time."""
import asyncio
import sys

REQUEST = "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"


async def one(port: int, host: str, keep: list | None) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST.format(host=host).encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    if keep is None:
        writer.close()
    else:
        keep.append(writer)
    return status


async def idle(port: int, n: int, host: str) -> int:
    keep: list = []
    statuses = []
    for start in range(0, n, 500):  # in batches, within the listen backlog
        statuses += await asyncio.gather(*(one(port, host, keep) for _ in range(start, min(n, start + 500))))
    ok = sum(1 for s in statuses if s == 200)
    print(f"{ok} of {n} connections answered 200 and stay open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    return 0 if ok == n else 1


async def inflight(port: int, n: int, host: str) -> int:
    statuses = await asyncio.gather(*(one(port, host, None) for _ in range(n)), return_exceptions=True)
    ok = sum(1 for s in statuses if s == 200)
    print(f"{ok} of {n} concurrent requests answered 200", flush=True)
    return 0 if ok == n else 1


def main() -> int:
    mode, port, n, host = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    run = idle if mode == "idle" else inflight
    return asyncio.run(run(port, n, host))


if __name__ == "__main__":
    sys.exit(main())
