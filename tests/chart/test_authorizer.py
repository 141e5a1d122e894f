"""The external authorizer on a real cluster (issue 13): the chart installed with the values the
README's "Already running an ingress or a mesh?" section gives (`authorizer.enabled`), real
operator and authorizer pods from the images tests/cluster/images.sh builds, and AccessApplications
with `spec.enforcement`. Checked with real requests to the authorizer pods' addresses and its
Service, described as a forward-auth proxy describes them (a bounded number: every wait polls at
most WAIT / POLL times).

Needs a cluster with nodes and the images, as test_journey.py does (skipped without KUBECONFIG,
failed instead under PORTCULLIS_REQUIRE_CLUSTER=1). Uses a release and namespaces of its own, so it
does not meet the journey's `portcullis-system`."""

import copy
import re
import secrets
import time
from pathlib import Path

import pytest
import yaml
from conftest import eventually as poll
from test_journey import K8s, PREFIX, TAG, diagnostics, metric, mint_jwt, quickstart_objects, ready, request, shell_commands

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
WAIT = 60.0
POLL = 0.25
GROUP = ("access.portcullis.dev", "v1alpha1")
HOST = "api.mysite.com"
ORIGIN = "https://example.com"


def eventually(what, check, timeout=WAIT):
    return poll(what, check, timeout=timeout, interval=POLL)


def readme_authorizer_values():
    """The `--set` values of the README section's `helm upgrade` that enables the authorizer."""
    text = README.read_text()
    start = text.index("\n## Already running an ingress or a mesh?\n")
    section = text[start : text.index("\n## ", start + 1)]
    commands = [c for lang, b in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S) if lang == "sh" for c in shell_commands(b)]
    helm = [c for c in commands if c[:2] == ["helm", "upgrade"]]
    assert len(helm) == 1, f"the section should show one helm upgrade: {commands}"
    values = {}
    flags = helm[0]
    for i, flag in enumerate(flags):
        if flag == "--set":
            key, value = flags[i + 1].split("=", 1)
            *parents, leaf = key.split(".")
            node = values
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = {"true": True, "false": False}.get(value, value)
    assert values.get("authorizer", {}).get("enabled") is True, values
    assert "--reuse-values" in flags, "an upgrade of the README's install keeps its values"
    return values


def test_the_readme_enables_the_authorizer_with_a_helm_upgrade():
    """No cluster needed: the section's command is one this test can run."""
    readme_authorizer_values()


@pytest.fixture(scope="module")
def cluster(cluster_required):
    k8s = K8s()
    suffix = secrets.token_hex(3)
    system, apps_ns = f"pcz-authz-{suffix}", f"pcz-authz-apps-{suffix}"
    ext = k8s.client.ApiextensionsV1Api()
    crds_before = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    yield k8s, system, apps_ns
    from kubernetes.client.rest import ApiException

    def quietly(f, *args, **kwargs):
        try:
            f(*args, **kwargs)
        except ApiException as e:
            if e.status != 404:
                print(f"cleanup: {e.status} {e.reason}")
        except Exception as e:  # noqa: BLE001 - helm: release not found
            print(f"cleanup: {e}")

    plural = (*GROUP, apps_ns, "accessapplications")
    # With the operator still running, the applications' finalizers are removed by it.
    try:
        for app in k8s.custom.list_namespaced_custom_object(*plural)["items"]:
            quietly(k8s.custom.delete_namespaced_custom_object, *plural, app["metadata"]["name"])
        eventually("the applications gone", lambda: not k8s.custom.list_namespaced_custom_object(*plural)["items"], timeout=30)
    except Exception as e:  # noqa: BLE001 - the CRD or namespace never came
        print(f"cleanup: {e}")
        for app in k8s.custom.list_namespaced_custom_object(*plural).get("items", []):
            quietly(k8s.custom.patch_namespaced_custom_object, *plural, app["metadata"]["name"], {"metadata": {"finalizers": None}})
    quietly(k8s.core.delete_namespace, apps_ns)
    quietly(lambda: k8s.helm(system).uninstall(system, ignore_not_found=True, timeout=120))
    quietly(k8s.core.delete_namespace, system)
    for crd in ext.list_custom_resource_definition().items:
        if crd.metadata.name.endswith(".access.portcullis.dev") and crd.metadata.name not in crds_before:
            quietly(ext.delete_custom_resource_definition, crd.metadata.name)
    for h in k8s._helm.values():
        h.close()


def forward_auth(address, path, headers=None, method="GET"):
    """A forward-auth check of `method https://api.mysite.com<path>` at `address`, described as
    Traefik and Caddy describe it."""
    described = {
        "X-Forwarded-Method": method,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": HOST,
        "X-Forwarded-Uri": path,
        **(headers or {}),
    }
    return request(address, path="/forward-auth", headers=described, host="authz")


def application(namespace, name, spec):
    return {"apiVersion": "/".join(GROUP), "kind": "AccessApplication", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_the_operator_configures_the_charts_authorizer(cluster):
    k8s, system, apps_ns = cluster
    try:
        authorizer_on_a_cluster(k8s, system, apps_ns)
    except AssertionError:
        print(diagnostics(k8s, [system, apps_ns]))
        raise


def authorizer_on_a_cluster(k8s, system, apps_ns):
    core = k8s.core
    t0 = time.monotonic()

    def step(name):
        print(f"[{time.monotonic() - t0:6.1f} s] {name}")

    step("install")
    for doc in yaml.safe_load_all((ROOT / "crds" / "crds.yaml").read_text()):
        if doc:
            k8s.server_side_apply(doc)
    values = readme_authorizer_values()
    values["operator"] = {"image": {"repository": f"{PREFIX}/portcullis-operator", "tag": TAG}, "replicas": 1}
    values["sidecar"] = {"image": {"repository": f"{PREFIX}/portcullis-sidecar", "tag": TAG}}
    # Nothing here is injected: keep other namespaces' pod creations away from this operator.
    values["webhook"] = {"injection": {"podAnnotationOptIn": False}}
    k8s.helm(system).install(str(ROOT / "charts" / "portcullis"), system, values, namespace=system, create_namespace=True, timeout=120)
    operator = f"app.kubernetes.io/instance={system},app.kubernetes.io/component=operator"
    authorizers = "access.portcullis.dev/role=authorizer"
    eventually("a Ready operator pod", lambda: [p for p in k8s.pods(system, operator) if ready(p)])

    # Running, not Ready: no application asks for the authorizer yet, so nothing was pushed
    # (the same start as an injected sidecar's).
    def running(pods):
        return pods if len(pods) == 2 and all(p.status.phase == "Running" and p.status.pod_ip for p in pods) else None

    pods = eventually("two running authorizer pods", lambda: running(k8s.pods(system, authorizers)), timeout=90)
    for pod in pods:
        eventually(f"{pod.metadata.name} answering", lambda: request(f"{pod.status.pod_ip}:9901", "/readyz", host="authz")[0] == 503)
        assert forward_auth(f"{pod.status.pod_ip}:8080", "/data")[0] == 503, "no configuration: everything refused"

    step("applications")
    core.create_namespace(k8s.client.V1Namespace(metadata=k8s.client.V1ObjectMeta(name=apps_ns)))
    custom = k8s.custom
    # The API server refuses what contradicts itself: a selector on an External application.
    from kubernetes.client.rest import ApiException

    contradictory = application(apps_ns, "bad", {"domains": ["bad.mysite.com"], "enforcement": "External", "selector": {"matchLabels": {"app": "api"}}})
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(*GROUP, apps_ns, "accessapplications", contradictory)
    assert refused.value.status in (400, 403, 422) and "spec.selector" in refused.value.body, refused.value.body

    app, _, _ = quickstart_objects()
    app = copy.deepcopy(app)
    app["metadata"]["namespace"] = apps_ns
    del app["spec"]["selector"]
    app["spec"]["enforcement"] = "External"
    public = application(apps_ns, "api-public", {
        "domains": [f"{HOST}/public"], "enforcement": "Both", "selector": {"matchLabels": {"app": "none"}},
        "policies": [{"name": "public", "action": "Bypass", "include": [{"everyone": {}}]}],
    })
    side = application(apps_ns, "side", {
        "domains": ["side.mysite.com"], "selector": {"matchLabels": {"app": "none"}},
        "policies": [{"name": "all", "action": "Allow", "include": [{"everyone": {}}]}],
    })
    for obj in (app, public, side):
        k8s.server_side_apply(obj)

    def status(name):
        return custom.get_namespaced_custom_object(*GROUP, apps_ns, "accessapplications", name).get("status") or {}

    def synced(name):
        s = status(name)
        cond = next((c for c in s.get("conditions", []) if c["type"] == "Synced"), {})
        return s if cond.get("status") == "True" and s.get("authorizers") == {"matched": 2, "synced": 2} else None

    s = eventually("api synced on both authorizer pods", lambda: synced("api"))
    assert "sidecars" not in s, f"External: no sidecar enforces it: {s}"
    s = eventually("api-public synced on both", lambda: synced("api-public"))
    assert s["sidecars"] == {"matched": 0, "synced": 0}, s
    # The three applications reconcile independently: wait for side's first status write.
    s = eventually("side's status written", lambda: (lambda s: s if "sidecars" in s else None)(status("side")))
    assert "authorizers" not in s and s["sidecars"] == {"matched": 0, "synced": 0}, s
    pods = eventually("two Ready authorizer pods", lambda: (lambda ps: ps if len(ps) == 2 and all(map(ready, ps)) else None)(k8s.pods(system, authorizers)))

    step("requests")
    jwt = mint_jwt("alice@mysite.com")
    for pod in pods:
        address = f"{pod.status.pod_ip}:8080"
        status_, headers, body = forward_auth(address, "/data", {"Origin": ORIGIN})
        assert status_ == 401 and '"no_credentials"' in body, body
        assert headers.get("access-control-allow-origin") == ORIGIN, headers
        status_, headers, body = forward_auth(address, "/data", {"Cookie": f"CF_Authorization={jwt}", "Cf-Access-Authenticated-User-Email": "forged@evil.test"})
        assert status_ == 200, body
        assert headers.get("cf-access-authenticated-user-email") == "alice@mysite.com", headers
        assert forward_auth(address, "/data", {"Cookie": f"CF_Authorization={mint_jwt('mallory@evil.test')}"})[0] == 403
        assert forward_auth(address, "/public/page")[0] == 200, "the Bypass path (enforcement Both)"
        status_, _, body = request(address, path="/forward-auth", host="authz", headers={"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "side.mysite.com", "X-Forwarded-Uri": "/"})
        assert status_ == 404 and '"unknown_host"' in body, "a Sidecar application is not on the authorizer"
        text = request(f"{pod.status.pod_ip}:9901", "/metrics", host="authz")[2]
        assert metric(text, 'portcullis_config_pushes_total{result="ok",enforcer="authz"}') >= 1, text
        assert metric(text, 'portcullis_requests_total{app="%s/api",decision="deny",mode="enforce",reason="no_credentials",enforcer="authz"}' % apps_ns) >= 1, text
    (service,) = core.list_namespaced_service(system, label_selector="app.kubernetes.io/component=authorizer").items
    assert forward_auth(f"{service.spec.cluster_ip}:8080", "/data")[0] == 401, "through the Service"

    step("an edit, and an authorizer pod replaced")
    app["spec"]["domains"] = [HOST, "www.mysite.com"]
    k8s.server_side_apply(app)
    for pod in pods:
        described = {"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.mysite.com", "X-Forwarded-Uri": "/"}
        eventually(f"{pod.metadata.name} enforces the edit", lambda: request(f"{pod.status.pod_ip}:8080", path="/forward-auth", host="authz", headers=described)[0] == 401)
    gone = pods[0].metadata.name
    core.delete_namespaced_pod(gone, system, grace_period_seconds=0)

    def replaced():
        ps = k8s.pods(system, authorizers)
        return ps if len(ps) == 2 and all(map(ready, ps)) and gone not in {p.metadata.name for p in ps} else None

    pods = eventually("a replacement authorizer pod, configured (Ready)", replaced, timeout=90)
    for pod in pods:
        assert forward_auth(f"{pod.status.pod_ip}:8080", "/data")[0] == 401
    eventually("api synced on both again", lambda: synced("api"))

    step("deleted")
    custom.delete_namespaced_custom_object(*GROUP, apps_ns, "accessapplications", "api")
    for pod in pods:
        eventually(f"{pod.metadata.name}: 404 after the deletion", lambda: forward_auth(f"{pod.status.pod_ip}:8080", "/data")[0] == 404)
    eventually("api gone (finalizer released)", lambda: "api" not in {a["metadata"]["name"] for a in custom.list_namespaced_custom_object(*GROUP, apps_ns, "accessapplications")["items"]})
    step("done")
