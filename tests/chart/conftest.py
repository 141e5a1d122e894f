"""Shared by the chart tests: the gate of the tests that need a cluster, and bounded polling.

A test that needs one is skipped when KUBECONFIG is unset, and fails instead under
PORTCULLIS_REQUIRE_CLUSTER=1 (what tests/run.sh sets when it has a cluster), so that CI cannot
pass by skipping it."""

import os
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
