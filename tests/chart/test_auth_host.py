"""The chart's `authenticationHost.*` values (README "One sign-in across applications and hosts"):
the authentication host's own sidecar pods, rendered offline by Helm's own engine as
test_chart.py does, and checked against what the operator requires of a pod before it pushes to
it (read from the operator's Rust source, so a renamed constant there fails here), against the
sidecar's own flags, and by running the real sidecar binary with the rendered environment; then
installed on a real cluster (as test_authorizer.py, whose release and namespaces fixture it
shares), where the operator must count its pods as sidecars of the member applications."""

import contextlib
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import helm_python
import pytest
import yaml
from conftest import eventually, free_port

from test_authorizer import cluster  # noqa: F401 - the install test's release and namespaces
from test_chart import NAMESPACE, RELEASE, ROOT, chart, kinds, one, render  # noqa: F401
from test_journey import PREFIX, README, TAG, diagnostics, ready, request, shell_commands

HOST = "login.mysite.com"
NAME = f"{RELEASE}-auth-host"
ENABLED = {"authenticationHost": {"enabled": True, "host": HOST}}
KEY = "bm90LWEtcmVhbC1rZXktanVzdC1hLXRlc3QtdmFsdWU="


def rust_const(path, name):
    """The string value of `const NAME: &str = "…";` in a Rust source file of the repository."""
    text = (ROOT / path).read_text()
    found = re.findall(rf'const {name}: &str = "([^"]+)";', text)
    assert len(found) == 1, f"{path} should define {name} once: {found}"
    return found[0]


def injected_env_names():
    """The variables the injection webhook gives every sidecar (`env(…)` and `field(…)` calls of
    inject.rs's `container`)."""
    text = (ROOT / "operator/src/webhook/inject.rs").read_text()
    body = text[text.index("pub fn container(") : text.index("pub fn patch(")]
    names = set(re.findall(r'(?:env|field)\("([A-Z_]+)"', body))
    assert {"PORTCULLIS_PUSH_PUBLIC_KEY_VALUE", "POD_NAME"} <= names, names
    return names


def ours(docs):
    return [d for d in docs if d["metadata"]["name"] == NAME]


def pod_of(docs):
    return one(ours(docs), "Deployment")["spec"]["template"]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector, labels):
    """A Kubernetes label selector, as operator/src/desired.rs `selects` evaluates it."""
    ok = all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
    for r in selector.get("matchExpressions") or []:
        value, values = labels.get(r["key"]), r.get("values") or []
        ok = ok and {
            "In": value in values,
            "NotIn": value not in values,
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[r["operator"]]
    return ok


def notes(chart, values, namespace=NAMESPACE):
    out = chart.render(values=values, name=RELEASE, namespace=namespace)
    [text] = [t for p, t in out.items() if p.endswith("NOTES.txt")]
    return text


def readme_values():
    """The `--set` values of the `helm upgrade` in the README's section on one sign-in across
    hosts, as nested values."""
    text = README.read_text()
    start = text.index("\n### One sign-in across applications and hosts\n")
    section = text[start : start + 1 + re.search(r"\n#{2,3} ", text[start + 1 :]).start()]
    blocks = [b for lang, b in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S) if lang == "sh"]
    [helm] = [c for b in blocks for c in shell_commands(b) if c[:2] == ["helm", "upgrade"]]
    assert "--reuse-values" in helm, "an upgrade of the README's install keeps its values"
    values = {}
    for flag, setting in zip(helm, helm[1:]):
        if flag == "--set":
            key, value = setting.split("=", 1)
            *parents, leaf = key.split(".")
            node = values
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = {"true": True, "false": False}.get(value, value)
    return values


def test_the_readmes_upgrade_renders_what_its_text_says(chart):
    values = readme_values()
    ah = values["authenticationHost"]
    assert ah["enabled"] is True and ah["host"] == "login.mysite.com", values
    ah["pushPublicKey"] = KEY  # what the chart reads from the operator's Secret on a cluster
    docs = render(chart, values)
    labels = pod_of(docs)["metadata"]["labels"]
    assert all(d["metadata"]["namespace"] == ah["namespace"] for d in ours(docs))
    # The README's example selector matches these pods.
    text = README.read_text()
    section = text[text.index("\n### One sign-in across applications and hosts\n") :]
    example = re.search(r"`matchExpressions: (\[.*?\])`", section, flags=re.S).group(1)
    assert selects({"matchExpressions": yaml.safe_load(example)}, labels), (example, labels)


def test_off_by_default_renders_nothing(chart):
    docs = render(chart)
    assert not [d for d in docs if "auth-host" in d["metadata"]["name"]]
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "authentication-host"]
    assert "authentication host" not in notes(chart, {})


def test_enabled_renders_a_deployment_a_service_and_a_pdb(chart):
    docs = render(chart, ENABLED)
    assert kinds(ours(docs)) == ["Deployment", "PodDisruptionBudget", "Service"]
    assert all(d["metadata"]["namespace"] == NAMESPACE for d in ours(docs))
    deployment = one(ours(docs), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = pod_of(docs)
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "portcullis-auth-host", "the default podLabels, what member selectors match"
    assert labels["app.kubernetes.io/component"] == "authentication-host"
    assert selects(deployment["spec"]["selector"], labels)
    [container] = pod["spec"]["containers"]
    assert "args" not in container and "command" not in container, "the image's proxy mode, no --manifests"
    env = env_of(container)
    assert not [n for n in env if "MANIFESTS" in n], env
    assert env["PORTCULLIS_LISTEN"]["value"] == "0.0.0.0:14080"
    assert env["PORTCULLIS_ADMIN_LISTEN"]["value"] == "0.0.0.0:14090"
    assert env["PORTCULLIS_UPSTREAM"]["value"] == "http://127.0.0.1:9"
    # In the release namespace the key comes from the operator's Secret, as the authorizer's.
    assert env["PORTCULLIS_PUSH_PUBLIC_KEY_VALUE"]["valueFrom"]["secretKeyRef"] == {"name": "portcullis-push-key", "key": "public-key"}
    assert not [n for n in env if n.startswith("OTEL_")], "tracing is off by default"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"portcullis": 14080, "portcullis-adm": 14090}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"]) == (path, "portcullis-adm")
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    service = one(ours(docs), "Service")
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, "portcullis")]
    pdb = one(ours(docs), "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"], labels) and pdb["spec"]["minAvailable"] == 1
    # Neither the operator's nor the authorizer's selectors pick these pods.
    others = render(chart, {**ENABLED, "authorizer": {"enabled": True}})
    for d in others:
        if d["kind"] in ("Service", "PodDisruptionBudget", "Deployment") and d["metadata"]["name"] != NAME:
            selector = d["spec"]["selector"]
            selector = selector if "matchLabels" in selector or "matchExpressions" in selector else {"matchLabels": selector}
            assert not selects(selector, labels), d["metadata"]["name"]


def test_the_pods_are_what_the_operator_pushes_to_and_the_webhook_leaves_alone(chart):
    """operator/src/desired.rs `sidecar_pod` pushes to a pod with a container port named
    ADMIN_PORT_NAME; the webhook skips a pod that has a CONTAINER_NAME container; injected
    sidecars get the push key inline among inject.rs's variables. Read from the Rust source."""
    pod = pod_of(render(chart, ENABLED))
    [container] = pod["spec"]["containers"]
    assert container["name"] == rust_const("operator/src/webhook/inject.rs", "CONTAINER_NAME")
    names = {p["name"] for p in container["ports"]}
    assert rust_const("operator/src/desired.rs", "ADMIN_PORT_NAME") in names
    assert rust_const("operator/src/webhook/inject.rs", "TRAFFIC_PORT_NAME") in names
    assert len(pod["spec"]["containers"]) == 1, "the operator takes the first container declaring the admin port"
    env = env_of(container)
    assert injected_env_names() <= set(env), f"an injected sidecar's variables, and more: {sorted(env)}"
    # The PodMonitor of injected sidecars (metrics.podMonitor) scrapes these pods too.
    label = rust_const("operator/src/webhook/inject.rs", "SIDECAR_LABEL")
    assert pod["metadata"]["labels"][label] == "injected"
    monitor = [d for d in render(chart, {**ENABLED, "metrics": {"podMonitor": {"enabled": True}}}) if d["metadata"]["name"] == f"{RELEASE}-sidecars"]
    assert selects(one(monitor, "PodMonitor")["spec"]["selector"], pod["metadata"]["labels"])
    # Every PORTCULLIS_ variable is one the sidecar reads (a misspelt one would be ignored).
    cli = (ROOT / "sidecar/src/cli.rs").read_text()
    for name in env:
        assert f'env = "{name}"' in cli or name.startswith("OTEL_"), f"{name} is no flag of the sidecar"


def test_the_notes_example_selector_matches_the_pods(chart):
    values = {"authenticationHost": {"enabled": True, "host": HOST, "podLabels": {"app": "sso-login"}}}
    text = notes(chart, values)
    assert HOST in text and NAME in text and f"https://{HOST}/.portcullis/callback" in text
    [expressions] = re.findall(r"matchExpressions: (\[.*\])", text)
    selector = {"matchExpressions": yaml.safe_load(expressions)}
    labels = pod_of(render(chart, values))["metadata"]["labels"]
    assert selects(selector, labels), (selector, labels)
    assert selects(selector, {"app": "grafana"}), "and the member application's own pods"
    assert not selects(selector, {"app": "other"})


def test_tracing_reaches_the_authentication_host(chart):
    endpoint = "http://otel-collector.observability:4317"
    env = env_of(pod_of(render(chart, {**ENABLED, "tracing": {"otlpEndpoint": endpoint, "samplerArg": "0.5", "sampler": "traceidratio"}}))["spec"]["containers"][0])
    assert {k: env[k]["value"] for k in env if k.startswith("OTEL_")} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.5",
    }


def test_without_a_host_the_render_fails_saying_so(chart):
    with pytest.raises(helm_python.HelmError) as refused:
        render(chart, {"authenticationHost": {"enabled": True}})
    assert "authenticationHost.host is required" in str(refused.value)


def test_another_namespace_takes_the_key_inline_or_fails_saying_how(chart):
    values = {"authenticationHost": {"enabled": True, "host": HOST, "namespace": "tools", "pushPublicKey": KEY}}
    docs = render(chart, values)
    assert all(d["metadata"]["namespace"] == "tools" for d in ours(docs))
    env = env_of(pod_of(docs)["spec"]["containers"][0])
    assert env["PORTCULLIS_PUSH_PUBLIC_KEY_VALUE"] == {"name": "PORTCULLIS_PUSH_PUBLIC_KEY_VALUE", "value": KEY}
    assert "namespace tools" in notes(chart, values)
    # Offline there is no Secret to read: the render names the value to set.
    del values["authenticationHost"]["pushPublicKey"]
    with pytest.raises(helm_python.HelmError) as refused:
        render(chart, values)
    assert "authenticationHost.pushPublicKey" in str(refused.value) and "portcullis-push-key" in str(refused.value)


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"authenticationHost": {"enabled": True, "host": "https://login.mysite.com"}}, "host"),
        ({"authenticationHost": {"podLabels": {"app": None}}}, "podLabels"),
        ({"authenticationHost": {"replicas": 0}}, "replicas"),
        ({"authenticationHost": {"ports": {"traffic": 70000, "admin": 14090}}}, "traffic"),
        ({"authenticationHost": {"hostname": HOST}}, "hostname"),
    ],
)
def test_the_schema_checks_the_authentication_host_values(chart, values, complaint):
    with pytest.raises(helm_python.HelmError) as refused:
        chart.validate_schema(values)
    assert complaint in str(refused.value)


def status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_sidecar_binary_runs_with_the_rendered_environment(chart):
    """The rendered variables start the real sidecar: alive, not Ready and 503 until the operator
    pushes (as an injected sidecar)."""
    binary = Path(os.environ.get("PORTCULLIS_SIDECAR_BIN", ROOT / "target" / "debug" / "portcullis-sidecar"))
    if not binary.exists():
        pytest.skip(f"{binary} not built (cargo build -p portcullis-sidecar, or set PORTCULLIS_SIDECAR_BIN)")
    values = {"authenticationHost": {"enabled": True, "host": HOST, "pushPublicKey": KEY}}
    container = pod_of(render(chart, values))["spec"]["containers"][0]
    traffic, admin = free_port(), free_port()
    env = {"PATH": os.environ.get("PATH", ""), "POD_NAME": "auth-host-0", "POD_NAMESPACE": NAMESPACE}
    env.update({k: e["value"] for k, e in env_of(container).items() if "value" in e})
    # The pod's addresses, on this machine's loopback.
    env["PORTCULLIS_LISTEN"] = env["PORTCULLIS_LISTEN"].replace("0.0.0.0:14080", f"127.0.0.1:{traffic}")
    env["PORTCULLIS_ADMIN_LISTEN"] = env["PORTCULLIS_ADMIN_LISTEN"].replace("0.0.0.0:14090", f"127.0.0.1:{admin}")
    assert env["PORTCULLIS_LISTEN"] == f"127.0.0.1:{traffic}" and env["PORTCULLIS_ADMIN_LISTEN"] == f"127.0.0.1:{admin}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually("the sidecar's /healthz", lambda: status(f"http://127.0.0.1:{admin}/healthz") == 200, timeout=30)
            assert status(f"http://127.0.0.1:{admin}/readyz") == 503, "not Ready before a push"
            assert status(f"http://127.0.0.1:{traffic}/.portcullis/authenticate") == 503
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.seek(0)
            output = log.read().decode(errors="replace")
        assert process.returncode in (0, -15), output


def test_the_operator_pushes_the_member_applications_to_the_charts_authentication_host(cluster):
    """The README's way: install, then enable the authentication host with an upgrade (the
    chart reads the push key the operator created), in the members' namespace."""
    k8s, system, apps_ns = cluster
    with printing_diagnostics_on_failure(k8s, [system, apps_ns]):
        authentication_host_on_a_cluster(k8s, system, apps_ns)


@contextlib.contextmanager
def printing_diagnostics_on_failure(k8s, namespaces):
    try:
        yield
    except AssertionError:
        print(diagnostics(k8s, namespaces))
        raise


def authentication_host_on_a_cluster(k8s, system, apps_ns):
    chart_dir = str(ROOT / "charts" / "portcullis")
    # This tree's CRDs (Helm leaves alone those an earlier install left).
    for doc in yaml.safe_load_all((ROOT / "crds" / "crds.yaml").read_text()):
        if doc:
            k8s.server_side_apply(doc)
    values = {
        "operator": {"image": {"repository": f"{PREFIX}/portcullis-operator", "tag": TAG}, "replicas": 1},
        "sidecar": {"image": {"repository": f"{PREFIX}/portcullis-sidecar", "tag": TAG}},
        # Nothing here is injected: keep other namespaces' pod creations away from this operator.
        "webhook": {"injection": {"podAnnotationOptIn": False}},
    }
    k8s.helm(system).install(chart_dir, system, values, namespace=system, create_namespace=True, timeout=120)
    operator = f"app.kubernetes.io/instance={system},app.kubernetes.io/component=operator"
    eventually("a Ready operator pod", lambda: [p for p in k8s.pods(system, operator) if ready(p)], timeout=120)
    eventually("the push key Secret", lambda: k8s.core.read_namespaced_secret("portcullis-push-key", system).data.get("public-key"), timeout=60)
    k8s.core.create_namespace(k8s.client.V1Namespace(metadata=k8s.client.V1ObjectMeta(name=apps_ns)))
    values.update(readme_values())
    values["authenticationHost"]["namespace"] = apps_ns
    k8s.helm(system).upgrade(chart_dir, system, values, namespace=system, timeout=120)

    selector = f"app.kubernetes.io/instance={system},app.kubernetes.io/component=authentication-host"

    def running():
        pods = k8s.pods(apps_ns, selector)
        return pods if len(pods) == 2 and all(p.status.phase == "Running" and p.status.pod_ip for p in pods) else None

    pods = eventually("two running authentication host pods", running, timeout=120)
    for pod in pods:
        # Not Ready, 503: nothing pushed yet, as an injected sidecar before its first push.
        address = f"{pod.status.pod_ip}:14090"
        eventually(f"{pod.metadata.name} answering", lambda: request(address, "/readyz", host=HOST)[0] == 503, timeout=60)

    # The example's three member applications, in this namespace, selecting these pods (and
    # their own, which do not exist here).
    [(key, label)] = values["authenticationHost"]["podLabels"].items()
    members = []
    for doc in yaml.safe_load_all((ROOT / "examples" / "sso" / "access.yaml").read_text()):
        doc["metadata"]["namespace"] = apps_ns
        if doc["kind"] == "AccessApplication":
            name = doc["metadata"]["name"]
            doc["spec"]["selector"] = {"matchExpressions": [{"key": key, "operator": "In", "values": [name, label]}]}
            members.append(name)
        k8s.server_side_apply(doc)
    assert len(members) == 3, members

    def synced(name):
        s = k8s.custom.get_namespaced_custom_object("access.portcullis.dev", "v1alpha1", apps_ns, "accessapplications", name).get("status") or {}
        cond = next((c for c in s.get("conditions", []) if c["type"] == "Synced"), {})
        return s if cond.get("status") == "True" and s.get("sidecars") == {"matched": 2, "synced": 2} else None

    for name in members:
        s = eventually(f"{name} synced on both authentication host pods", lambda: synced(name), timeout=120)
        print(f"{apps_ns}/{name}: sidecars {s['sidecars']}")
    pods = eventually("both pods Ready", lambda: (lambda ps: ps if len(ps) == 2 and all(map(ready, ps)) else None)(k8s.pods(apps_ns, selector)), timeout=60)
    for pod in pods:
        # The authentication host answers only /.portcullis/… there: anything else is 404.
        status_, _, body = request(f"{pod.status.pod_ip}:14080", "/", host=HOST)
        assert status_ == 404, (status_, body)
        # A member's own host finds its pushed configuration there: sign in, not 503.
        status_, _, body = request(f"{pod.status.pod_ip}:14080", "/", host="grafana.mysite.com", headers={"Accept": "application/json"})
        assert status_ == 401 and '"no_credentials"' in body, (status_, body)
    (service,) = k8s.core.list_namespaced_service(apps_ns, label_selector=selector).items
    # Through the Service, once kube-proxy has programmed it.
    eventually("404 through the Service", lambda: request(f"{service.spec.cluster_ip}:80", "/", host=HOST)[0] == 404, timeout=60)
