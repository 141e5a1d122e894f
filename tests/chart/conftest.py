"""Shared by the chart tests: the gate of the tests that need a cluster, and bounded polling.

A test that needs one is skipped when KUBECONFIG is unset, and fails instead under
PORTCULLIS_REQUIRE_CLUSTER=1 (what tests/run.sh sets when it has a cluster), so that CI cannot
pass by skipping it."""

import os
import socket
import time

import pytest


def needs_cluster():
    """Skip (or fail, under PORTCULLIS_REQUIRE_CLUSTER=1) when KUBECONFIG is unset."""
    if os.environ.get("KUBECONFIG"):
        return
    message = "needs a cluster: set KUBECONFIG"
    if os.environ.get("PORTCULLIS_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"{message} (PORTCULLIS_REQUIRE_CLUSTER=1: a cluster test may not be skipped)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def cluster_required():
    """Depend on this from the first fixture of a module that needs a cluster."""
    needs_cluster()


def eventually(what, check, timeout=60.0, interval=0.5):
    """`check()`'s first truthy result within `timeout` seconds, asked every `interval` seconds
    (bounded polling: at most timeout / interval calls)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as e:  # noqa: BLE001 - the API server, a webhook or a pod not answering yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def free_port(host="127.0.0.1"):
    """A port on `host` for a server the test is about to start, kept from everyone else meanwhile.

    A port bound and released at once is often the next one the kernel hands to any `bind(0)` or
    `connect()` (the cluster's components make many). Leaving it in TIME_WAIT keeps it from them
    for about a minute, while the server, which sets SO_REUSEADDR (tokio does), binds it at once:
    the same reservation as the Rust harness's `free_port` (tests/src/support.rs)."""
    with socket.socket() as listener:
        # Inherited by the TIME_WAIT socket: what lets the server bind the port.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        address = listener.getsockname()
        client = socket.create_connection(address[:2])
        ours, _ = listener.accept()
        ours.close()  # the side that closes first keeps the port in TIME_WAIT
        client.close()
        return address[1]
