#!/usr/bin/env python3
"""Sends N requests one after the other on one keep-alive connection and checks every answer's
status: the driver of bench/run.sh's callgrind pass, where the proxy's instructions between two
counter resets are divided by N. It never measures time. With --callgrind PID, WARMUP requests go first, then
`callgrind_control -z PID` zeroes the counters, and `callgrind_control -d PID` dumps them after
the N requests, all on the same connection. Usage:
keepalive.py [--callgrind PID] PORT N METHOD HOST STATUS ['Name: value' ...]"""
import http.client
import subprocess
import sys

WARMUP = 20


def main() -> int:
    args = sys.argv[1:]
    pid = None
    if args[0] == "--callgrind":
        pid, args = args[1], args[2:]
    port, n, method, host, status = args[0], int(args[1]), args[2], args[3], int(args[4])
    headers = {"Host": host}
    for h in filter(None, args[5:]):
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
    if pid is not None:
        if send(conn, WARMUP, method, headers, status) != 0:
            return 1
        subprocess.run(["callgrind_control", "-z", pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if send(conn, n, method, headers, status) != 0:
        return 1
    if pid is not None:
        subprocess.run(["callgrind_control", "-d", pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn.close()
    return 0


def send(conn, n, method, headers, status) -> int:
    for i in range(n):
        conn.request(method, "/", headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != status:
            print(f"keepalive.py: request {i + 1} answered {resp.status}, expected {status}", file=sys.stderr)
            return 1
        if resp.will_close:
            print(f"keepalive.py: request {i + 1}: the proxy closed the connection", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
