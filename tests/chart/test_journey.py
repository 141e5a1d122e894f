"""The install journey on a real cluster, as a user makes it: the README's "Install on a cluster"
section is read and its commands and YAML run (so the docs cannot rot), then every step is
checked with real requests to real pods, through the Service's ClusterIP or a pod's IP.

Needs a cluster with nodes (skipped without KUBECONFIG, failed under PORTCULLIS_REQUIRE_CLUSTER=1)
whose nodes have the images $PORTCULLIS_IMAGE_PREFIX/portcullis-{operator,sidecar}:$PORTCULLIS_IMAGE_TAG
(default localhost/…:dev, what tests/cluster/images.sh builds) and localhost/busybox:local (the
demo app: busybox httpd with a CGI script that answers the headers it received and logs each
request), and whose pod and Service addresses this machine reaches (the shared test cluster's do).

The README's commands are run by a small interpreter (`Readme.run`): `kubectl` and `helm` through
the Python Kubernetes client and Helm's engine (helm-python-sdk), `docker build/push` checked
against the image names the install uses (tests/cluster/images.sh built them), `REGISTRY=… TAG=…`
replaced by this run's image prefix and tag. A command it does not know fails the test: teach it
here when the README changes."""

import base64
import http.client
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import eventually as poll

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PREFIX = os.environ.get("PORTCULLIS_IMAGE_PREFIX", "localhost")
TAG = os.environ.get("PORTCULLIS_IMAGE_TAG", "dev")
APP_NS = "shop"  # the README's example namespace
SIDECAR = "portcullis-sidecar"
HOST = "api.mysite.com"
ORIGIN = "https://example.com"
KEY = ROOT / "tests" / "fixtures" / "keys" / "rsa.pem"
WAIT = 120.0
# One poll of a pod or Service address every POLL seconds, so a wait sends at most WAIT / POLL
# requests: these are functional checks, never load.
POLL = 0.2


def eventually(what, check, timeout=WAIT, interval=POLL):
    return poll(what, check, timeout=timeout, interval=interval)


# ---------------------------------------------------------------- the README


def readme_blocks():
    """The fenced code blocks of the README's "Install on a cluster" section: (language, text)."""
    text = README.read_text()
    start = text.index("\n## Install on a cluster\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end], flags=re.S)


def shell_commands(block):
    """The commands of a sh block: continuation lines joined, comments dropped, `&&` split."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            if "&&" in words:
                i = words.index("&&")
                commands.append(words[:i])
                words = words[i + 1 :]
            else:
                commands.append(words)
                words = []
    return commands


def readme_block(containing):
    """The one sh block of the section with a command starting with `containing`."""
    found = [
        shell_commands(b)
        for lang, b in readme_blocks()
        if lang == "sh" and any(c[: len(containing)] == containing for c in shell_commands(b))
    ]
    assert len(found) == 1, f"the README's install section should have one sh block with {containing}: {found}"
    return found[0]


def readme_objects(kind):
    """The YAML objects of the section of this kind."""
    objects = []
    for lang, block in readme_blocks():
        if lang == "yaml":
            objects += [o for o in yaml.safe_load_all(block) if o and o.get("kind") == kind]
    assert objects, f"the README's install section shows no {kind}"
    return objects


def test_every_block_of_the_install_section_is_run_by_the_journey():
    """A command or block added to the section must be taught to the journey (no cluster needed)."""
    known_sh = {("kubectl", "apply"), ("helm", "install"), ("kubectl", "label"), ("helm", "uninstall")}
    for lang, block in readme_blocks():
        if lang == "sh":
            firsts = {tuple(c[:2]) for c in shell_commands(block)}
            assert firsts & known_sh, f"a sh block the journey does not run:\n{block}"
            readme = Readme(None, dry_run=True)
            for command in shell_commands(block):
                readme.run(command)
        else:
            assert lang == "yaml", f"a {lang} block the journey does not run:\n{block}"
            for o in yaml.safe_load_all(block):
                # A fragment (pod annotations) is shown, not applied; whole objects are applied.
                assert "kind" not in o or o["kind"] in ("Service", "NetworkPolicy"), o


class Readme:
    """Runs the README's shell commands against the cluster (see the module docstring)."""

    def __init__(self, k8s, dry_run=False):
        self.k8s = k8s
        self.dry_run = dry_run
        self.vars = {}
        self.images = set()

    def expand(self, word):
        return re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: self.vars[m.group(1) or m.group(2)], word)

    def run(self, argv):
        if all(re.fullmatch(r"[A-Z_]+=\S*", w) for w in argv):
            for w in argv:
                name, _ = w.split("=", 1)
                ours = {"REGISTRY": PREFIX, "TAG": TAG}
                assert name in ours, f"README sets {name}, which the journey does not know"
                self.vars[name] = ours[name]
            return
        argv = [self.expand(w) for w in argv]
        namespace = None
        rest = []
        i = 0
        while i < len(argv):
            if argv[i] in ("--namespace", "-n"):
                namespace = argv[i + 1]
                i += 2
            else:
                rest.append(argv[i])
                i += 1
        match rest:
            case ["docker", "build", "-f", dockerfile, "-t", image, "."]:
                component = Path(dockerfile).parent.name
                assert image == f"{PREFIX}/portcullis-{component}:{TAG}", (dockerfile, image)
                self.images.add(image)
            case ["docker", "push", image]:
                assert image in self.images, f"pushes {image}, which the README did not build"
            case ["kubectl", "apply", "--server-side", "-f", path]:
                self.apply_files(ROOT / path)
            case ["helm", "install", release, chart, *flags]:
                self.helm_install(release, chart, namespace, flags)
            case ["kubectl", "rollout", "status", target] if target.startswith("deployment/"):
                self.rollout_status(namespace, target.split("/", 1)[1])
            case ["kubectl", "label", "namespace", name, label]:
                key, value = label.split("=", 1)
                if not self.dry_run:
                    self.k8s.core.patch_namespace(name, {"metadata": {"labels": {key: value}}})
            case ["helm", "uninstall", release]:
                if not self.dry_run:
                    self.k8s.helm(namespace).uninstall(release, timeout=120)
            case ["kubectl", "delete", "namespace", name]:
                if not self.dry_run:
                    self.k8s.core.delete_namespace(name)
            case _:
                raise AssertionError(f"the journey does not know the README's command {shlex.join(argv)}")

    def apply_files(self, path):
        # kubectl reads a folder's .yaml/.yml/.json files, not its subfolders.
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [path]
        assert files, f"no YAML in {path}"
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc and not self.dry_run:
                    self.k8s.server_side_apply(doc)

    def helm_install(self, release, chart, namespace, flags):
        values = {}
        create_namespace = False
        flags = list(flags)
        while flags:
            flag = flags.pop(0)
            if flag == "--create-namespace":
                create_namespace = True
            elif flag == "--set":
                key, value = flags.pop(0).split("=", 1)
                assert not re.search(r"[\[\],\\{}]", key + value), f"--set {key}={value}: not a plain value"
                *parents, leaf = key.split(".")
                node = values
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = value
            else:
                raise AssertionError(f"helm install {flag}: not known to the journey")
        self.release, self.namespace, self.values = release, namespace, values
        if not self.dry_run:
            helm = self.k8s.helm(namespace)
            helm.install(str(ROOT / chart), release, values, namespace=namespace, create_namespace=create_namespace, timeout=120)

    def rollout_status(self, namespace, name):
        if self.dry_run:
            return
        apps = self.k8s.client.AppsV1Api()

        def rolled_out():
            d = apps.read_namespaced_deployment(name, namespace)
            return d.status.updated_replicas == d.spec.replicas == d.status.ready_replicas == d.status.available_replicas

        eventually(f"deployment {namespace}/{name} rolled out", rolled_out, timeout=180)


# ---------------------------------------------------------------- the cluster


class K8s:
    def __init__(self):
        from kubernetes import client, config

        config.load_kube_config()
        self.client = client
        self.api = client.ApiClient()
        self.core = client.CoreV1Api()
        self.custom = client.CustomObjectsApi()
        self._helm = {}

    def helm(self, namespace):
        import helm_python

        if namespace not in self._helm:
            self._helm[namespace] = helm_python.Config(namespace=namespace)
        return self._helm[namespace]

    def server_side_apply(self, obj, namespace=None):
        """`kubectl apply --server-side` for any object (field manager `kubectl`)."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        group_version = f"apis/{api_version}" if "/" in api_version else f"api/{api_version}"
        resources = self.api.call_api(f"/{group_version}", "GET", response_type=object, _return_http_data_only=True, auth_settings=["BearerToken"])
        resource = next(r for r in resources["resources"] if r["kind"] == kind and "/" not in r["name"])
        name = obj["metadata"]["name"]
        namespace = obj["metadata"].get("namespace") or namespace
        scope = f"/namespaces/{namespace}" if resource["namespaced"] else ""
        path = f"/{group_version}{scope}/{resource['name']}/{name}"
        return self.api.call_api(
            path,
            "PATCH",
            query_params=[("fieldManager", "kubectl"), ("force", "true")],
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            body=obj,
            response_type=object,
            _return_http_data_only=True,
            auth_settings=["BearerToken"],
        )

    def pods(self, namespace, selector):
        return self.core.list_namespaced_pod(namespace, label_selector=selector).items


def request(address, path="/cgi-bin/echo", method="GET", headers=None, host=HOST):
    """One HTTP request to `address` (ip:port): (status, headers dict lower-cased, body text)."""
    ip, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(ip, int(port), timeout=5)
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode(errors="replace")
    finally:
        conn.close()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(email):
    """An RS256 JWT for the README's quickstart issuer, signed with the test key (openssl)."""
    header = b64url(json.dumps({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    claims = {"iss": "https://issuer.example.test", "aud": "quickstart", "email": email, "sub": email, "exp": int(time.time()) + 600}
    signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(KEY)], input=signing_input.encode(), capture_output=True, check=True).stdout
    return f"{signing_input}.{b64url(signature)}"


def quickstart_objects():
    """The quickstart's AccessApplication and AccessServiceToken (examples/quickstart/access.yaml),
    selecting the demo app's pods; its Secret is left out: in a cluster the operator makes it."""
    docs = list(yaml.safe_load_all((ROOT / "examples" / "quickstart" / "access.yaml").read_text()))
    app = next(d for d in docs if d["kind"] == "AccessApplication")
    token = next(d for d in docs if d["kind"] == "AccessServiceToken")
    app["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    public = {
        "apiVersion": "access.portcullis.dev/v1alpha1",
        "kind": "AccessApplication",
        "metadata": {"name": "api-public", "namespace": APP_NS},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "domains": [f"{HOST}/index.html"],
            # "Bypass — Everyone": every request, anonymous ones included (docs/behaviour.md B-POLICY-3).
            "policies": [{"name": "public", "action": "Bypass", "include": [{"everyone": {}}]}],
        },
    }
    return app, token, public


DEMO_CGI = """#!/bin/sh
# The demo app: logs the request line (kubectl logs) and answers the headers it received.
echo "request $REQUEST_METHOD $REQUEST_URI" >&2
printf 'Content-Type: text/plain\\r\\n\\r\\n'
env | grep '^HTTP_' | sort
"""


def demo_app():
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "demo-cgi", "namespace": APP_NS},
        "data": {"echo": DEMO_CGI},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": APP_NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {
                    # httpd runs as PID 1, which ignores SIGTERM: no use waiting 30 s for it.
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "app",
                            "image": "localhost/busybox:local",
                            "imagePullPolicy": "IfNotPresent",
                            # On 127.0.0.1, as the README says: only the sidecar reaches it.
                            "command": ["httpd", "-f", "-p", "127.0.0.1:3000", "-h", "/www"],
                            "ports": [{"containerPort": 3000}],
                            "volumeMounts": [{"name": "cgi", "mountPath": "/www/cgi-bin"}],
                        }
                    ],
                    "volumes": [{"name": "cgi", "configMap": {"name": "demo-cgi", "defaultMode": 0o755}}],
                },
            },
        },
    }
    return config_map, deployment


def ready(pod):
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def app_logs(k8s):
    return "".join(k8s.core.read_namespaced_pod_log(p.metadata.name, APP_NS, container="app") for p in k8s.pods(APP_NS, "app=api"))


def metric(text, name):
    """The sum of the samples of `name` (a metric name, or one series with its labels) in
    Prometheus text."""
    def matches(line):
        series = line.rsplit(" ", 1)[0]
        return series == name or ("{" not in name and series.startswith(name + "{"))

    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and not line.startswith("#") and matches(line))


@pytest.fixture(scope="module")
def k8s(cluster_required):
    k8s = K8s()
    crds_before = {c.metadata.name for c in k8s.client.ApiextensionsV1Api().list_custom_resource_definition().items}
    yield k8s
    # What the journey made, whatever step it reached (the README's uninstall may not have run).
    from kubernetes.client.rest import ApiException

    def quietly(f, *args):
        try:
            f(*args)
        except ApiException as e:
            if e.status != 404:
                raise
        except Exception as e:  # noqa: BLE001 - helm: release not found
            print(f"cleanup: {e}")

    group = ("access.portcullis.dev", "v1alpha1", APP_NS, "accessapplications")
    # With the operator still running, the applications' finalizers are removed by it.
    for app in k8s.custom.list_namespaced_custom_object(*group)["items"]:
        quietly(k8s.custom.delete_namespaced_custom_object, *group, app["metadata"]["name"])
    quietly(k8s.core.delete_namespace, APP_NS)
    quietly(lambda: k8s.helm("portcullis-system").uninstall("portcullis", ignore_not_found=True, timeout=120))
    quietly(k8s.core.delete_namespace, "portcullis-system")
    # Without it (a failed step after the uninstall), they would keep the namespace Terminating.
    for app in k8s.custom.list_namespaced_custom_object(*group)["items"]:
        quietly(k8s.custom.patch_namespaced_custom_object, *group, app["metadata"]["name"], {"metadata": {"finalizers": None}})
    ext = k8s.client.ApiextensionsV1Api()
    for crd in ext.list_custom_resource_definition().items:
        if crd.metadata.name.endswith(".access.portcullis.dev") and crd.metadata.name not in crds_before:
            quietly(ext.delete_custom_resource_definition, crd.metadata.name)
    for h in k8s._helm.values():
        h.close()


def diagnostics(k8s, namespaces):
    """What a failed step leaves to read: pods, their container states, events, recent logs."""
    out = []
    for ns in namespaces:
        try:
            for pod in k8s.core.list_namespaced_pod(ns).items:
                out.append(f"pod {ns}/{pod.metadata.name} {pod.status.phase} {pod.status.pod_ip}")
                for c in (pod.status.container_statuses or []) + (pod.status.ephemeral_container_statuses or []):
                    out.append(f"  {c.name} ready={c.ready} restarts={c.restart_count} state={c.state.to_dict()}")
                    try:
                        log = k8s.core.read_namespaced_pod_log(pod.metadata.name, ns, container=c.name, tail_lines=15)
                        out += [f"    | {line}" for line in log.splitlines()]
                    except Exception as e:  # noqa: BLE001 - a container that never started
                        out.append(f"    (no logs: {str(e)[:100]})")
            for e in k8s.core.list_namespaced_event(ns).items[-30:]:
                out.append(f"event {ns} {e.involved_object.kind}/{e.involved_object.name}: {e.reason}: {e.message}")
        except Exception as e:  # noqa: BLE001 - the namespace is gone
            out.append(f"{ns}: {e}")
    return "\n".join(out)


def test_the_install_journey(k8s):
    try:
        journey(k8s)
    except AssertionError:
        print(diagnostics(k8s, [APP_NS, "portcullis-system"]))
        raise


def journey(k8s):
    core, apps_api = k8s.core, k8s.client.AppsV1Api()
    readme = Readme(k8s)
    steps = []
    t0 = time.monotonic()

    def step(name):
        steps.append((name, time.monotonic()))
        print(f"[{time.monotonic() - t0:6.1f} s] {name}")

    # -- The README's install block: CRDs with plain kubectl, the images, helm install, rollout.
    step("install (README)")
    install = readme_block(["helm", "install"])
    for command in install:
        readme.run(command)
    release, system = readme.release, readme.namespace
    assert readme.values["operator"]["image"] == {"repository": f"{PREFIX}/portcullis-operator", "tag": TAG}
    ext = k8s.client.ApiextensionsV1Api()
    for name in ("accessapplications.access.portcullis.dev", "accessservicetokens.access.portcullis.dev"):
        crd = ext.read_custom_resource_definition(name)
        assert "kubectl" in {m.manager for m in crd.metadata.managed_fields or []}, f"{name}: applied with kubectl --server-side"

    # -- Two operator pods Ready, exactly one leader (the Lease's holder, and the leader metric).
    step("operator pods")
    operators = eventually(
        "two Ready operator pods",
        lambda: (lambda pods: pods if len(pods) == 2 and all(map(ready, pods)) else None)(
            k8s.pods(system, f"app.kubernetes.io/instance={release}")
        ),
    )
    names = {p.metadata.name for p in operators}
    coordination = k8s.client.CoordinationV1Api()
    leader = eventually("a leader", lambda: coordination.read_namespaced_lease("portcullis-operator", system).spec.holder_identity)
    assert leader in names, (leader, names)
    leaders = [p.metadata.name for p in operators if metric(request(f"{p.status.pod_ip}:9090", "/metrics")[2], "portcullis_operator_leader") == 1]
    assert leaders == [leader], leaders

    # -- The app namespace, labelled as the README says, the demo app and the README's Service
    #    and NetworkPolicy.
    step("inject")

    def absent(name):
        found = [n for n in core.list_namespace().items if n.metadata.name == name]
        assert not found or found[0].status.phase == "Terminating", f"namespace {name} exists: the journey uses the README's names"
        return not found

    eventually(f"an earlier namespace {APP_NS} to go", lambda: absent(APP_NS), timeout=180, interval=1)
    core.create_namespace(k8s.client.V1Namespace(metadata=k8s.client.V1ObjectMeta(name=APP_NS)))
    eventually("shop's default ServiceAccount", lambda: core.read_namespaced_service_account("default", APP_NS))
    for command in readme_block(["kubectl", "label"]):
        readme.run(command)
    for obj in readme_objects("Service") + readme_objects("NetworkPolicy"):
        k8s.server_side_apply(obj, namespace=APP_NS)
    for obj in demo_app():
        k8s.server_side_apply(obj)

    # -- Injected, running, but not Ready: no config was pushed yet (no application selects the
    #    pods), so the sidecar refuses all traffic (503) and its readiness probe (/readyz) fails.
    def started(ps):
        running = [p for p in ps if any(c.name == SIDECAR and c.state.running for c in p.status.container_statuses or [])]
        return ps if len(ps) == 2 and len(running) == 2 else None

    pods = eventually("two app pods with a running sidecar", lambda: started(k8s.pods(APP_NS, "app=api")))
    for pod in pods:
        assert SIDECAR in {c.name for c in pod.spec.containers}, pod.spec.containers
        eventually(f"{pod.metadata.name}'s sidecar answering", lambda: request(f"{pod.status.pod_ip}:14090", "/readyz")[0] == 503)
        assert request(f"{pod.status.pod_ip}:14080")[0] == 503, "no config: everything refused"
        assert not ready(core.read_namespaced_pod(pod.metadata.name, APP_NS))

    # -- The applications (the quickstart's, selecting the pods, and a Bypass path) and the
    #    token: the operator pushes, the pods become Ready.
    step("applications")
    app, token, public = quickstart_objects()
    for obj in (token, app, public):
        k8s.server_side_apply(obj)
    pods = eventually("two Ready app pods", lambda: (lambda ps: ps if len(ps) == 2 and all(map(ready, ps)) else None)(k8s.pods(APP_NS, "app=api")))
    for pod in pods:
        status, _, text = request(f"{pod.status.pod_ip}:14090", "/metrics")
        assert status == 200 and metric(text, 'portcullis_config_pushes_total{result="ok"}') >= 1, text
    service = core.read_namespaced_service("api", APP_NS)
    svc = f"{service.spec.cluster_ip}:{service.spec.ports[0].port}"
    secret = eventually("the token's Secret", lambda: core.read_namespaced_secret("ci-token-credentials", APP_NS).data)
    client_id = base64.b64decode(secret["client-id"]).decode()
    client_secret = base64.b64decode(secret["client-secret"]).decode()
    credentials = {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": client_secret}
    for pod in pods:
        eventually(f"{pod.metadata.name} enforces api", lambda: request(f"{pod.status.pod_ip}:14080", headers=credentials)[0] == 200)

    # -- What only a real pod shows: the sidecar's securityContext enforced, probes and resources
    #    as the chart says, its logs readable.
    step("sidecar container checks")
    check_sidecar_container(k8s, pods[0])

    # -- Through the Service's ClusterIP: the seed's scenarios.
    step("requests through the Service")
    status, headers, body = request(svc, headers={"Origin": ORIGIN})
    assert status == 401, body
    assert headers.get("access-control-allow-origin") == ORIGIN and headers.get("access-control-allow-credentials") == "true", headers
    assert json.loads(body)["error"] == "no_credentials", body

    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "office"}
    status, headers, body = request(svc, method="OPTIONS", headers=preflight)
    assert status == 200, body
    assert headers.get("access-control-allow-origin") == ORIGIN, headers
    assert "office" in headers.get("access-control-allow-headers", "").lower(), headers
    assert "GET" in headers.get("access-control-allow-methods", ""), headers

    status, _, body = request(svc, headers={**credentials, "Origin": ORIGIN})
    assert status == 200, body
    assert f"HTTP_CF_ACCESS_CLIENT_ID={client_id}" in body, body
    assert client_secret not in body and "HTTP_CF_ACCESS_CLIENT_SECRET" not in body, "the secret never reaches the app"

    jwt = mint_jwt("alice@mysite.com")
    status, _, body = request(svc, headers={"Cookie": f"CF_Authorization={jwt}"})
    assert status == 200, body
    assert "HTTP_CF_ACCESS_AUTHENTICATED_USER_EMAIL=alice@mysite.com" in body, body
    assert f"HTTP_CF_ACCESS_JWT_ASSERTION={jwt}" in body, body
    assert request(svc, headers={"Cookie": f"CF_Authorization={mint_jwt('mallory@evil.test')}"})[0] == 403

    status, _, body = request(svc, path="/index.html")
    assert (status, body.strip()) == (200, "hello from busybox httpd"), "the Bypass path"

    refused = {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
    assert request(svc, method="OPTIONS", headers=refused)[0] == 403
    logs = app_logs(k8s)
    assert "request GET /cgi-bin/echo" in logs, logs
    assert "request OPTIONS" not in logs, f"a preflight reached the app:\n{logs}"

    # -- An edit of the AccessApplication, enforced by every pod (each asked at its own IP).
    step("edit")
    app["spec"]["domains"] = [HOST, "www.mysite.com"]
    applied = time.monotonic()
    k8s.server_side_apply(app)
    for pod in pods:
        eventually(f"{pod.metadata.name} enforces the edit", lambda: request(f"{pod.status.pod_ip}:14080", host="www.mysite.com")[0] == 401, timeout=10, interval=0.02)
    print(f"edit enforced by every pod {1000 * (time.monotonic() - applied):.0f} ms after the API server's answer")

    # -- The leader pod deleted: the standby takes over; traffic through the Service unaffected.
    step("leader deleted")
    core.delete_namespaced_pod(leader, system)
    statuses = []

    def new_leader():
        statuses.append(request(svc, headers=credentials)[0])
        holder = coordination.read_namespaced_lease("portcullis-operator", system).spec.holder_identity
        return holder if holder and holder != leader else None

    # The leader hands the Lease back as it stops; the standby (polling every 2 s) or the
    # Deployment's replacement pod, whichever asks first, takes it.
    successor = eventually("another replica to take the Lease", new_leader, timeout=90)
    print(f"the Lease went to {'the standby' if successor in names else 'the replacement pod'} {successor}")
    assert set(statuses) == {200}, f"traffic during the hand-over: {statuses}"
    app["spec"]["domains"] = [HOST, "shop.mysite.com"]
    k8s.server_side_apply(app)
    for pod in pods:
        eventually(f"{pod.metadata.name}: an edit after the hand-over", lambda: request(f"{pod.status.pod_ip}:14080", host="shop.mysite.com")[0] == 401)
        assert request(f"{pod.status.pod_ip}:14080", host="www.mysite.com")[0] == 404

    # -- An app pod deleted comes back, configured.
    step("app pod deleted")
    core.delete_namespaced_pod(pods[0].metadata.name, APP_NS)
    gone = pods[0].metadata.name
    pods = eventually(
        "a replacement app pod Ready",
        lambda: (lambda ps: ps if len(ps) == 2 and all(map(ready, ps)) and gone not in {p.metadata.name for p in ps} else None)(
            k8s.pods(APP_NS, "app=api")
        ),
    )
    for pod in pods:
        assert request(f"{pod.status.pod_ip}:14080", host="shop.mysite.com", headers=credentials)[0] == 200

    # -- The application deleted: its domains are unknown (404) everywhere.
    step("application deleted")
    k8s.custom.delete_namespaced_custom_object("access.portcullis.dev", "v1alpha1", APP_NS, "accessapplications", "api")
    for pod in pods:
        eventually(f"{pod.metadata.name}: 404 after the deletion", lambda: request(f"{pod.status.pod_ip}:14080", headers=credentials)[0] == 404)
    assert request(svc, headers=credentials)[0] == 404
    assert request(svc, path="/index.html")[0] == 200, "the other application is still enforced"
    # The README: delete the applications before uninstalling (their finalizer needs the operator).
    k8s.custom.delete_namespaced_custom_object("access.portcullis.dev", "v1alpha1", APP_NS, "accessapplications", "api-public")
    eventually("the applications gone (finalizers removed)", lambda: not k8s.custom.list_namespaced_custom_object("access.portcullis.dev", "v1alpha1", APP_NS, "accessapplications")["items"])

    # -- The README's uninstall: no operator-made object is left but the documented ones.
    step("uninstall (README)")
    uninstall = readme_block(["helm", "uninstall"])
    assert uninstall[0][:2] == ["helm", "uninstall"], uninstall
    readme.run(uninstall[0])
    selector = f"app.kubernetes.io/instance={release}"
    eventually("the operator pods gone", lambda: not k8s.pods(system, selector))
    admission = k8s.client.AdmissionregistrationV1Api()
    assert not admission.list_mutating_webhook_configuration(label_selector=selector).items
    assert not admission.list_validating_webhook_configuration(label_selector=selector).items
    rbac = k8s.client.RbacAuthorizationV1Api()
    assert not rbac.list_cluster_role(label_selector=selector).items
    assert not rbac.list_cluster_role_binding(label_selector=selector).items
    left = {f"Secret/{s.metadata.name}" for s in core.list_namespaced_secret(system).items}
    left |= {f"Lease/{l.metadata.name}" for l in coordination.list_namespaced_lease(system).items}
    left |= {f"Service/{s.metadata.name}" for s in core.list_namespaced_service(system).items}
    left |= {f"Deployment/{d.metadata.name}" for d in apps_api.list_namespaced_deployment(system).items}
    documented = {"Secret/portcullis-push-key", f"Secret/{release}-webhook-tls", "Lease/portcullis-operator"}
    assert left == documented, f"left in {system} after helm uninstall: {sorted(left)}; the README names {sorted(documented)}"
    # Kept: the CRDs, the user's resources and the Secrets the operator made for them.
    ext.read_custom_resource_definition("accessapplications.access.portcullis.dev")
    k8s.custom.get_namespaced_custom_object("access.portcullis.dev", "v1alpha1", APP_NS, "accessservicetokens", "ci-token")
    core.read_namespaced_secret("ci-token-credentials", APP_NS)
    for command in uninstall[1:]:
        readme.run(command)
    eventually(f"namespace {system} gone", lambda: not [n for n in core.list_namespace().items if n.metadata.name == system], timeout=180)

    step("done")
    for (name, start), (_, end) in zip(steps, steps[1:]):
        print(f"  {name}: {end - start:.1f} s")


def check_sidecar_container(k8s, pod):
    """On the running pod: non-root, a read-only root filesystem, no shell, the chart's probes and
    resources, and `kubectl logs` readable. The process is inspected from an ephemeral container
    sharing its PID namespace, running as the same user (so /proc/1/root is reachable)."""
    values = yaml.safe_load((ROOT / "charts" / "portcullis" / "values.yaml").read_text())
    sidecar = next(c for c in pod.spec.containers if c.name == SIDECAR)
    assert sidecar.image == f"{PREFIX}/portcullis-sidecar:{TAG}", sidecar.image
    resources = k8s.api.sanitize_for_serialization(sidecar.resources)
    assert resources == values["sidecar"]["resources"], resources
    assert (sidecar.readiness_probe.http_get.path, sidecar.readiness_probe.http_get.port) == ("/readyz", "portcullis-adm")
    assert (sidecar.liveness_probe.http_get.path, sidecar.liveness_probe.http_get.port) == ("/healthz", "portcullis-adm")
    ports = {p.name: p.container_port for p in sidecar.ports}
    assert ports == {"portcullis": values["sidecar"]["ports"]["traffic"], "portcullis-adm": values["sidecar"]["ports"]["admin"]}

    name = pod.metadata.name
    script = (
        "grep -E '^(Uid|Gid):' /proc/1/status; "
        "touch /proc/1/root/tmp/probe 2>&1 && echo ROOTFS-WRITABLE; "
        "ls /proc/1/root/bin/sh 2>/dev/null && echo HAS-SHELL; "
        "ls /proc/1/root/usr/local/bin; echo END"
    )
    inspect = {
        "name": "inspect",
        "image": "localhost/busybox:local",
        "imagePullPolicy": "IfNotPresent",
        "targetContainerName": SIDECAR,
        "command": ["sh", "-c", script],
        "securityContext": {"runAsUser": 65532, "runAsGroup": 65532},
    }
    k8s.core.patch_namespaced_pod_ephemeralcontainers(name, APP_NS, {"spec": {"ephemeralContainers": [inspect]}})

    def finished():
        p = k8s.core.read_namespaced_pod(name, APP_NS)
        status = next((s for s in p.status.ephemeral_container_statuses or [] if s.name == "inspect"), None)
        return status and status.state.terminated

    eventually("the inspecting ephemeral container", finished)
    out = k8s.core.read_namespaced_pod_log(name, APP_NS, container="inspect")
    assert "END" in out, out
    assert re.search(r"^Uid:\s+65532\s+65532\s+65532\s+65532", out, re.M), f"runs as 65532:\n{out}"
    assert "Read-only file system" in out and "ROOTFS-WRITABLE" not in out, f"the root filesystem is read-only:\n{out}"
    assert "HAS-SHELL" not in out, f"no shell in the image:\n{out}"
    assert out.split("\n").count("portcullis-sidecar") == 1, out

    logs = k8s.core.read_namespaced_pod_log(name, APP_NS, container=SIDECAR)
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert any("portcullis-sidecar serving" in json.dumps(line) for line in lines), logs
