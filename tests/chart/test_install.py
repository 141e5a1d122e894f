"""End to end against the cluster KUBECONFIG names (skipped without one, failed instead under
PORTCULLIS_REQUIRE_CLUSTER=1; see conftest.py): installs the chart with
Helm's engine (helm-python-sdk's release install), runs the operator binary on this machine with
the flags the chart gives it (the API server calls its webhooks at webhook.urlOverride, since no
kubelet is needed to run the Deployment), and checks on created Pod objects that the sidecar is
injected, and that an invalid AccessApplication is refused at apply time.

Knobs: PORTCULLIS_OPERATOR_BIN (default target/debug/portcullis-operator),
PORTCULLIS_E2E_WEBHOOK_HOST (default 127.0.0.1: an API server on this machine)."""

import os
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import eventually, free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "portcullis"
BINARY = Path(os.environ.get("PORTCULLIS_OPERATOR_BIN", ROOT / "target" / "debug" / "portcullis-operator"))
HOST = os.environ.get("PORTCULLIS_E2E_WEBHOOK_HOST", "127.0.0.1")
SIDECAR = "portcullis-sidecar"


@pytest.fixture(scope="module")
def cluster(cluster_required):
    import helm_python
    from kubernetes import client, config

    if not BINARY.exists():
        pytest.fail(f"{BINARY} not built: cargo build -p portcullis-operator")
    config.load_kube_config()
    core = client.CoreV1Api()
    admission = client.AdmissionregistrationV1Api()
    suffix = secrets.token_hex(3)
    release = f"portcullis-e2e-{suffix}"
    namespace = release
    webhook_port = free_port(HOST)
    values = {
        "operator": {"replicas": 1},
        "webhook": {"urlOverride": f"https://{HOST}:{webhook_port}", "timeoutSeconds": 10},
    }
    helm = helm_python.Config(namespace=namespace)
    helm.install(str(CHART), release, values, namespace=namespace, create_namespace=True, timeout=120)
    operator = None
    log = tempfile.NamedTemporaryFile(prefix="portcullis-operator-", suffix=".log", delete=False)
    try:
        with helm_python.Chart.load(str(CHART)) as chart:
            rendered = chart.render(values=values, name=release, namespace=namespace)
        deployment = yaml.safe_load(rendered["portcullis/templates/deployment.yaml"].split("\n---")[0])
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        # The chart's own flags, with this machine's addresses.
        args = [a for a in args if not a.startswith(("--admin-listen", "--webhook-listen"))]
        args += [
            f"--admin-listen={HOST}:{free_port(HOST)}",
            f"--webhook-listen={HOST}:{webhook_port}",
            f"--webhook-extra-san={HOST}",
        ]
        env = dict(os.environ, POD_NAMESPACE=namespace, POD_NAME=f"{release}-local", RUST_LOG="info")
        operator = subprocess.Popen([str(BINARY), *args], env=env, stdout=log, stderr=subprocess.STDOUT)

        def ca_bundles_written():
            m = admission.read_mutating_webhook_configuration(f"{release}-inject")
            v = admission.read_validating_webhook_configuration(f"{release}-validate")
            return all(w.client_config.ca_bundle for w in (m.webhooks or []) + (v.webhooks or []))

        eventually("the operator to write the webhooks' caBundle", ca_bundles_written)
        yield {"core": core, "client": client, "suffix": suffix, "namespace": namespace}
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                operator.kill()
        print(f"operator log: {log.name}")
        try:
            helm.uninstall(release)
        finally:
            core.delete_namespace(namespace)
            helm.close()


def make_namespace(cluster, name, labels):
    client = cluster["client"]
    ns = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    cluster["core"].create_namespace(ns)
    # Pods need the namespace's `default` ServiceAccount. A bare API server (no controller
    # manager) never creates it; on a full cluster it exists already.
    sa = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    try:
        cluster["core"].create_namespaced_service_account(name, sa)
    except client.exceptions.ApiException as e:
        if e.status != 409:
            raise
    return name


def create_pod(cluster, namespace, name, annotations=None):
    client = cluster["client"]
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations or {}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="app", image="registry.example/app:1", ports=[client.V1ContainerPort(container_port=8000)])]
        ),
    )
    return eventually(f"pod {namespace}/{name} to be admitted", lambda: cluster["core"].create_namespaced_pod(namespace, pod))


def sidecar_of(pod):
    return next((c for c in pod.spec.containers if c.name == SIDECAR), None)


@pytest.fixture(scope="module")
def app_namespaces(cluster):
    core = cluster["core"]
    labelled = make_namespace(cluster, f"e2e-injected-{cluster['suffix']}", {"access.portcullis.dev/inject": "enabled"})
    plain = make_namespace(cluster, f"e2e-plain-{cluster['suffix']}", {})
    yield labelled, plain
    core.delete_namespace(labelled)
    core.delete_namespace(plain)


def test_a_pod_in_a_labelled_namespace_gets_the_sidecar(cluster, app_namespaces):
    labelled, _ = app_namespaces
    pod = create_pod(cluster, labelled, "web")
    sidecar = sidecar_of(pod)
    assert sidecar is not None, [c.name for c in pod.spec.containers]
    assert {p.name: p.container_port for p in sidecar.ports} == {"portcullis": 14080, "portcullis-adm": 14090}
    env = {e.name: e for e in sidecar.env}
    assert env["PORTCULLIS_UPSTREAM"].value == "http://127.0.0.1:8000"
    assert env["PORTCULLIS_PUSH_PUBLIC_KEY_VALUE"].value
    assert env["POD_NAME"].value_from.field_ref.field_path == "metadata.name"
    assert sidecar.security_context.read_only_root_filesystem is True
    assert pod.metadata.labels["access.portcullis.dev/sidecar"] == "injected"


def test_opt_out_and_opt_in(cluster, app_namespaces):
    labelled, plain = app_namespaces
    assert sidecar_of(create_pod(cluster, labelled, "opted-out", {"access.portcullis.dev/inject": "false"})) is None
    assert sidecar_of(create_pod(cluster, plain, "untouched")) is None
    assert sidecar_of(create_pod(cluster, plain, "opted-in", {"access.portcullis.dev/inject": "true"})) is not None


def test_an_invalid_application_is_refused_at_apply_time(cluster, app_namespaces):
    from kubernetes.client.rest import ApiException

    labelled, _ = app_namespaces
    custom = cluster["client"].CustomObjectsApi()

    def application(name, origins):
        return {
            "apiVersion": "access.portcullis.dev/v1alpha1",
            "kind": "AccessApplication",
            "metadata": {"name": name},
            "spec": {
                "domains": ["api.mysite.com"],
                "policies": [{"name": "staff", "action": "Allow", "include": [{"emailDomain": "mysite.com"}]}],
                "cors": {"allowedOrigins": origins},
            },
        }

    create = lambda body: custom.create_namespaced_custom_object("access.portcullis.dev", "v1alpha1", labelled, "accessapplications", body)
    with pytest.raises(ApiException) as refused:
        create(application("bad", ["example.com/path"]))
    assert refused.value.status in (400, 403, 422)
    assert "spec.cors.allowedOrigins[0]" in refused.value.body
    assert create(application("good", ["https://example.com"]))["metadata"]["name"] == "good"
