"""The chart's `tracing.*` values (README "Traces"): rendered as the OTEL variables of the
operator and the authorizer and as the operator's `--sidecar-otlp-*` flags (which the injection
webhook turns into the injected sidecars' OTEL variables), absent by default, and checked by the
values schema. Offline, with Helm's own engine as test_chart.py."""

import os
import subprocess
import tempfile
from pathlib import Path

import helm_python
import pytest

from test_chart import NAMESPACE, RELEASE, ROOT, authorizer_docs, chart, one, render  # noqa: F401

OTEL = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")
ENDPOINT = "http://otel-collector.observability:4317"
VALUES = {
    "tracing": {"otlpEndpoint": ENDPOINT, "sampler": "parentbased_traceidratio", "samplerArg": "0.25"},
    "authorizer": {"enabled": True},
}


def operator_container(docs):
    [deployment] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != f"{RELEASE}-authz"]
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def authorizer_container(docs):
    return one(authorizer_docs(docs), "Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_tracing_is_absent_by_default(chart):
    docs = render(chart, {"authorizer": {"enabled": True}})
    for container in (operator_container(docs), authorizer_container(docs)):
        env = env_of(container)
        assert not [n for n in env if n.startswith("OTEL_")], env
    assert not [a for a in operator_container(docs)["args"] if "otlp" in a or "traces" in a]


def test_tracing_values_reach_the_operator_the_authorizer_and_the_injected_sidecars(chart):
    docs = render(chart, VALUES)
    want = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    for name, container in (("operator", operator_container(docs)), ("authorizer", authorizer_container(docs))):
        env = env_of(container)
        assert {k: env.get(k) for k in OTEL} == want, name
    args = operator_container(docs)["args"]
    for flag in (
        f"--sidecar-otlp-endpoint={ENDPOINT}",
        "--sidecar-otlp-protocol=grpc",
        "--sidecar-traces-sampler=parentbased_traceidratio",
        "--sidecar-traces-sampler-arg=0.25",
    ):
        assert flag in args, args
    # Without a ratio, no OTEL_TRACES_SAMPLER_ARG (the sampler's default, 1).
    docs = render(chart, {"tracing": {"otlpEndpoint": ENDPOINT}})
    env = env_of(operator_container(docs))
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_always_on" and "OTEL_TRACES_SAMPLER_ARG" not in env


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"tracing": {"otlpEndpoint": "otel-collector:4317"}}, "otlpEndpoint"),
        ({"tracing": {"protocol": "http/json"}}, "protocol"),
        ({"tracing": {"sampler": "sometimes"}}, "sampler"),
        ({"tracing": {"samplerArg": "2"}}, "samplerArg"),
        ({"tracing": {"endpoint": ENDPOINT}}, "endpoint"),
    ],
)
def test_the_schema_checks_the_tracing_values(chart, values, complaint):
    with pytest.raises(helm_python.HelmError) as refused:
        chart.validate_schema(values)
    assert complaint in str(refused.value)


def test_the_operator_binary_accepts_the_rendered_tracing_flags(chart):
    """The flags and variables parse: the binary gets past them and fails only on connecting to
    a cluster (none here)."""
    binary = Path(os.environ.get("PORTCULLIS_OPERATOR_BIN", ROOT / "target" / "debug" / "portcullis-operator"))
    if not binary.exists():
        pytest.skip(f"{binary} not built (cargo build -p portcullis-operator, or set PORTCULLIS_OPERATOR_BIN)")
    container = operator_container(render(chart, VALUES))
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "KUBECONFIG": str(Path(home) / "none"), "POD_NAMESPACE": NAMESPACE}
        env.update({k: v for k, v in env_of(container).items() if k.startswith("OTEL_")})
        run = subprocess.run([str(binary), *container["args"]], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 2, f"flags refused: {run.stderr}"
    assert "connecting to the Kubernetes API" in run.stderr, run.stderr
    # And a bad variable is refused before that, naming itself.
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "KUBECONFIG": str(Path(home) / "none"), "POD_NAMESPACE": NAMESPACE}
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_SAMPLER": "sometimes"})
        run = subprocess.run([str(binary), *container["args"]], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "OTEL_TRACES_SAMPLER" in run.stderr and "traces_sampler" in run.stderr, run.stderr
