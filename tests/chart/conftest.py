"""Shared by the chart tests: the gate of the tests that need a cluster.

A test that needs one is skipped when KUBECONFIG is unset, and fails instead under
PORTCULLIS_REQUIRE_CLUSTER=1 (what tests/run.sh sets when it has a cluster), so that CI cannot
pass by skipping it."""

import os

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
