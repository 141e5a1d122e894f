"""The Helm chart, linted and rendered offline by Helm's own engine (helm-python-sdk wraps
Helm v4's Go SDK): what the rendered manifests must and must not contain."""

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import helm_python
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "portcullis"
NAMESPACE = "access-system"
RELEASE = "portcullis"


@pytest.fixture(scope="module")
def chart():
    with helm_python.Chart.load(str(CHART)) as loaded:
        yield loaded


def render(chart, values=None, namespace=NAMESPACE):
    """Every rendered object, in template order."""
    out = chart.render(values=values or {}, name=RELEASE, namespace=namespace)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def kinds(docs):
    return sorted(d["kind"] for d in docs)


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_container(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


# === lint and defaults ===


def test_lint_passes_strictly():
    report = helm_python.lint(str(CHART), strict=True, namespace=NAMESPACE)
    errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not errors, errors


def test_defaults_render_the_operator_and_its_webhooks(chart):
    docs = render(chart)
    assert kinds(docs) == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        ]
    )
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert all(d["metadata"].get("namespace", NAMESPACE) == NAMESPACE for d in docs)


# === RBAC ===


def rbac_rules(docs):
    return [(d["kind"], r) for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]


@pytest.mark.parametrize("values", [{}, {"webhook": {"certManager": {"enabled": True}}}])
def test_rbac_has_no_wildcards(chart, values):
    rules = rbac_rules(render(chart, values))
    assert rules
    for kind, rule in rules:
        for key in ("verbs", "resources", "apiGroups", "resourceNames"):
            for item in rule.get(key, []):
                assert "*" not in item, f"{kind} rule {rule} has a wildcard in {key}"


def test_rbac_grants_what_operator_rbac_yaml_lists_and_no_more_cluster_wide(chart):
    written = [d for d in yaml.safe_load_all((ROOT / "operator" / "rbac.yaml").read_text()) if d]
    docs = render(chart)
    cluster = [r for k, r in rbac_rules(docs) if k == "ClusterRole"]
    role = [r for k, r in rbac_rules(docs) if k == "Role"]
    # Leader election's Lease lives in the release namespace: the chart grants it with a Role,
    # whatever kind of role operator/rbac.yaml writes it in.
    is_lease = lambda r: r["apiGroups"] == ["coordination.k8s.io"]
    written_cluster = [r for d in written if d["kind"] == "ClusterRole" for r in d["rules"] if not is_lease(r)]
    written_namespaced = [r for d in written for r in d["rules"] if d["kind"] == "Role" or is_lease(r)]
    plain = [r for r in cluster if "resourceNames" not in r]
    norm = lambda r: (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"])))
    assert sorted(map(norm, plain)) == sorted(map(norm, written_cluster)), "keep the chart and operator/rbac.yaml in step"
    for rule in written_namespaced:
        granted = {v for r in role if r["apiGroups"] == rule["apiGroups"] and r["resources"] == rule["resources"] for v in r["verbs"]}
        assert set(rule["verbs"]) <= granted, f"the chart's Role lacks {rule}"
    # The only cluster-wide grants beyond it are the two webhook configurations, by name.
    named = [r for r in cluster if "resourceNames" in r]
    assert sorted(r["resourceNames"][0] for r in named) == [f"{RELEASE}-inject", f"{RELEASE}-validate"]
    assert all(sorted(r["verbs"]) == ["get", "patch"] for r in named)


def test_namespaced_rules_are_narrow(chart):
    role = [r for k, r in rbac_rules(render(chart)) if k == "Role"]
    leases = [r for r in role if r["resources"] == ["leases"]]
    assert {tuple(r["verbs"]) for r in leases} == {("create",), ("get", "update")}
    assert [r.get("resourceNames") for r in leases if "get" in r["verbs"]] == [["portcullis-operator"]]
    secrets = [r for r in role if r["resources"] == ["secrets"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [f"{RELEASE}-webhook-tls"], "verbs": ["update"]}]
    # cert-manager owns the certificate: no Secret update, no webhook configuration patch.
    docs = render(chart, {"webhook": {"certManager": {"enabled": True}}})
    assert not [r for _, r in rbac_rules(docs) if r["resources"] == ["secrets"] and "update" in r["verbs"]]
    assert not [r for _, r in rbac_rules(docs) if r["apiGroups"] == ["admissionregistration.k8s.io"]]


# === webhooks ===


def webhooks(docs):
    return [w for d in docs if d["kind"].endswith("WebhookConfiguration") for w in d["webhooks"]]


def excluded(webhook):
    for e in webhook["namespaceSelector"]["matchExpressions"]:
        if e["key"] == "kubernetes.io/metadata.name":
            assert e["operator"] == "NotIn"
            return set(e["values"])
    return set()


@pytest.mark.parametrize("namespace", [NAMESPACE, "portcullis"])
def test_every_webhook_excludes_kube_system_and_the_release_namespace(chart, namespace):
    hooks = webhooks(render(chart, {"webhook": {"excludeNamespaces": ["legacy"]}}, namespace=namespace))
    assert [w["name"] for w in hooks] == [
        "namespace.inject.access.portcullis.dev",
        "pod.inject.access.portcullis.dev",
        "validate.access.portcullis.dev",
    ]
    for w in hooks:
        assert {"kube-system", namespace, "legacy"} <= excluded(w), w["name"]
        assert w["sideEffects"] == "None" and w["admissionReviewVersions"] == ["v1"]
        assert w["clientConfig"]["service"] == {
            "name": f"{RELEASE}-webhook",
            "namespace": namespace,
            "path": w["clientConfig"]["service"]["path"],
            "port": 443,
        }


def test_webhook_paths_selectors_and_failure_policy(chart):
    hooks = {w["name"]: w for w in webhooks(render(chart))}
    ns, pod, validate = (hooks[n] for n in sorted(hooks))
    assert ns["clientConfig"]["service"]["path"] == "/inject/namespace"
    assert {"key": "access.portcullis.dev/inject", "operator": "In", "values": ["enabled"]} in ns["namespaceSelector"]["matchExpressions"]
    assert pod["clientConfig"]["service"]["path"] == "/inject/pod"
    assert {"key": "access.portcullis.dev/inject", "operator": "NotIn", "values": ["enabled", "disabled"]} in pod["namespaceSelector"]["matchExpressions"]
    assert validate["clientConfig"]["service"]["path"] == "/validate"
    assert validate["rules"][0]["resources"] == ["accessapplications", "accessservicetokens"]
    assert {w["failurePolicy"] for w in hooks.values()} == {"Fail"}
    hooks = webhooks(render(chart, {"webhook": {"failurePolicy": "Ignore", "injection": {"podAnnotationOptIn": False}}}))
    assert [w["name"] for w in hooks] == ["namespace.inject.access.portcullis.dev", "validate.access.portcullis.dev"]
    assert {w["failurePolicy"] for w in hooks} == {"Ignore"}


def test_operator_made_certificate_or_cert_manager(chart):
    args = operator_container(render(chart))["args"]
    assert f"--webhook-secret={RELEASE}-webhook-tls" in args
    assert f"--mutating-webhook-configuration={RELEASE}-inject" in args
    assert f"--validating-webhook-configuration={RELEASE}-validate" in args
    assert not any(a.startswith("--webhook-cert-dir") for a in args)

    docs = render(chart, {"webhook": {"certManager": {"enabled": True}}})
    assert {"Certificate", "Issuer"} <= set(kinds(docs))
    cert = one(docs, "Certificate")
    assert cert["spec"]["secretName"] == f"{RELEASE}-webhook-tls"
    assert f"{RELEASE}-webhook.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    container = operator_container(docs)
    assert "--webhook-cert-dir=/etc/portcullis/webhook-tls" in container["args"]
    assert not any(a.startswith("--mutating-webhook-configuration") for a in container["args"])
    assert container["volumeMounts"][0]["mountPath"] == "/etc/portcullis/webhook-tls"
    for d in docs:
        if d["kind"].endswith("WebhookConfiguration"):
            assert d["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{cert['metadata']['name']}"
    # A user's issuer: no self-signed Issuer.
    docs = render(chart, {"webhook": {"certManager": {"enabled": True, "issuerRef": {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}})
    assert "Issuer" not in kinds(docs)
    assert one(docs, "Certificate")["spec"]["issuerRef"]["name"] == "ca"


# === the operator's pod ===


def test_operator_pod_security_and_probes(chart):
    docs = render(chart)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert c["image"] == "ghcr.io/portcullis/portcullis-operator:0.1.0"


def test_sidecar_values_reach_the_operator_flags(chart):
    values = {
        "sidecar": {
            "image": {"repository": "registry.example/sidecar", "tag": "1.2.3", "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
            "ports": {"traffic": 15080, "admin": 15090},
            "resources": {"requests": {"cpu": "10m"}, "limits": {"memory": "64Mi"}},
        },
        "operator": {"leaderElection": {"enabled": False}, "replicas": 1},
    }
    args = operator_container(render(chart, values))["args"]
    assert f"--sidecar-image=registry.example/sidecar@sha256:{'a' * 64}" in args
    assert "--sidecar-image-pull-policy=Always" in args
    assert "--sidecar-port=15080" in args and "--sidecar-admin-port=15090" in args
    [resources] = [a for a in args if a.startswith("--sidecar-resources=")]
    # Helm merges user values over the defaults (memory request 32Mi stays).
    assert json.loads(resources.split("=", 1)[1]) == {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}
    assert "--leader-election=false" in args
    assert "PodDisruptionBudget" not in kinds(render(chart, values)), "no PDB for a single replica"


def test_the_operator_binary_accepts_the_rendered_flags(chart):
    """Every flag the chart passes parses: the binary gets past its flags and fails only on
    connecting to a cluster (none here)."""
    binary = Path(os.environ.get("PORTCULLIS_OPERATOR_BIN", ROOT / "target" / "debug" / "portcullis-operator"))
    if not binary.exists():
        pytest.skip(f"{binary} not built (cargo build -p portcullis-operator, or set PORTCULLIS_OPERATOR_BIN)")
    for values in ({}, {"webhook": {"certManager": {"enabled": True}}}, {"operator": {"leaderElection": {"enabled": False}}}):
        args = operator_container(render(chart, values))["args"]
        with tempfile.TemporaryDirectory() as home:
            env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "KUBECONFIG": str(Path(home) / "none"), "POD_NAMESPACE": NAMESPACE}
            run = subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode != 2, f"flags refused: {run.stderr}"
        assert "connecting to the Kubernetes API" in run.stderr, run.stderr


# === values.schema.json ===


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"operator": {"replicas": "two"}}, "replicas"),
        ({"operator": {"replicas": 0}}, "replicas"),
        ({"webhook": {"failurePolicy": "Maybe"}}, "failurePolicy"),
        ({"webhook": {"timeoutSeconds": 60}}, "timeoutSeconds"),
        ({"sidecar": {"ports": {"traffic": 70000}}}, "traffic"),
        ({"sidecar": {"image": {"pullPolicy": "Sometimes"}}}, "pullPolicy"),
        ({"operator": {"image": {"digest": "latest"}}}, "digest"),
        ({"operator": {"replica": 3}}, "replica"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "enabled"),
        ({"webhook": {"urlOverride": "http://127.0.0.1:9443"}}, "urlOverride"),
        ({"operator": {"resources": {"limits": {"memory": "lots"}}}}, "memory"),
    ],
)
def test_schema_rejects_bad_values(chart, values, complaint):
    with pytest.raises(helm_python.HelmError) as refused:
        chart.validate_schema(values)
    assert complaint in str(refused.value)
    with pytest.raises(helm_python.HelmError):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


def test_schema_accepts_the_defaults_and_real_overrides(chart):
    chart.validate_schema({})
    chart.validate_schema(
        {
            "operator": {"replicas": 3, "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
            "webhook": {"failurePolicy": "Ignore", "certManager": {"enabled": True}},
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        }
    )


# === optional resources ===

OPTIONAL = {
    "ServiceMonitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "PodMonitor": {"metrics": {"podMonitor": {"enabled": True}}},
    "PrometheusRule": {"metrics": {"prometheusRule": {"enabled": True}}},
    "ConfigMap": {"metrics": {"grafanaDashboard": {"enabled": True}}},
    "Certificate": {"webhook": {"certManager": {"enabled": True}}},
}


@pytest.mark.parametrize("kind", sorted(OPTIONAL))
def test_optional_resources_appear_only_when_enabled(chart, kind):
    assert kind not in kinds(render(chart))
    assert kind in kinds(render(chart, OPTIONAL[kind]))


def test_metrics_service_can_be_turned_off(chart):
    services = [d for d in render(chart, {"metrics": {"service": {"enabled": False}}}) if d["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == [f"{RELEASE}-webhook"]


def known_metrics():
    """Metric names registered in the operator's and the sidecar's code."""
    text = (ROOT / "operator/src/metrics.rs").read_text() + (ROOT / "sidecar/src/metrics.rs").read_text()
    return set(re.findall(r'"(portcullis_[a-z_]+)"', text))


def used_metrics(text):
    names = set(re.findall(r"\bportcullis_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_alerts_and_dashboard_use_real_metric_names(chart):
    docs = render(chart, {"metrics": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}})
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert sorted(r["alert"] for r in rules) == [
        "PortcullisApplicationInvalid",
        "PortcullisConfigRejected",
        "PortcullisJwksRefreshFailing",
        "PortcullisServiceTokenExpiringSoon",
        "PortcullisSidecarsOutOfSync",
    ]
    known = known_metrics()
    for rule in rules:
        used = used_metrics(rule["expr"])
        assert used and used <= known, f"{rule['alert']} uses unknown metrics {used - known}"
    expiring = next(r for r in rules if r["alert"] == "PortcullisServiceTokenExpiringSoon")
    assert "< 604800" in expiring["expr"], "7 days by default"
    dashboard = json.loads(one(docs, "ConfigMap")["data"]["portcullis.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert used_metrics(exprs) <= known, used_metrics(exprs) - known


# === the external authorizer ===


def authorizer_docs(docs):
    return [d for d in docs if d["metadata"]["name"] == f"{RELEASE}-authz"]


def test_the_authorizer_is_off_by_default_and_complete_when_enabled(chart):
    assert not authorizer_docs(render(chart)), "authorizer.enabled defaults to false"
    docs = render(chart, {"authorizer": {"enabled": True}})
    ours = authorizer_docs(docs)
    assert kinds(ours) == ["Deployment", "PodDisruptionBudget", "Service"]
    deployment = one(ours, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    # The label the operator finds authorizer pods by (operator/src/authorizer.rs ROLE_LABEL).
    role = re.search(r'ROLE_LABEL: \(&str, &str\) = \("([^"]+)", "([^"]+)"\)', (ROOT / "operator/src/authorizer.rs").read_text())
    assert role and labels.get(role.group(1)) == role.group(2), labels
    container = pod["spec"]["containers"][0]
    assert container["image"].startswith("ghcr.io/portcullis/portcullis-sidecar:"), "the sidecar's image"
    assert container["args"] == ["authz"], "no --manifests: it waits for the operator's pushes"
    env = {e["name"]: e for e in container["env"]}
    assert env["PORTCULLIS_LISTEN"]["value"] == "0.0.0.0:8080"
    assert env["PORTCULLIS_ADMIN_LISTEN"]["value"] == "0.0.0.0:9901"
    assert env["PORTCULLIS_PUSH_PUBLIC_KEY_VALUE"]["valueFrom"]["secretKeyRef"] == {"name": "portcullis-push-key", "key": "public-key"}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert "PORTCULLIS_TLS_CERT" not in env
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"authz": 8080, "portcullis-adm": 9901}, "the operator pushes to the port named portcullis-adm"
    assert (container["readinessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["port"]) == ("/readyz", "portcullis-adm")
    assert (container["livenessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["port"]) == ("/healthz", "portcullis-adm")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    selects = lambda selector: all(labels.get(k) == v for k, v in selector.items())
    service = one(ours, "Service")
    assert selects(service["spec"]["selector"])
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {"authz": (8080, "authz"), "metrics": (9901, "portcullis-adm")}
    assert selects(one(ours, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert one(ours, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    # The operator's webhook Service and PDB must not pick the authorizer's pods.
    for d in docs:
        if d["metadata"]["name"] != f"{RELEASE}-authz" and d["kind"] in ("Service", "PodDisruptionBudget"):
            selector = d["spec"]["selector"]
            assert not selects(selector.get("matchLabels", selector)), d["metadata"]["name"]


def test_the_authorizer_serves_tls_from_a_secret_and_is_scraped_like_the_sidecars(chart):
    docs = render(chart, {"authorizer": {"enabled": True, "tls": {"secretName": "authz-tls"}, "trustedProxies": ["10.0.0.0/8", "fd00::/8"]}, "metrics": {"podMonitor": {"enabled": True}}})
    pod = one(authorizer_docs(docs), "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["PORTCULLIS_TLS_CERT"], env["PORTCULLIS_TLS_KEY"]) == ("/etc/portcullis/tls/tls.crt", "/etc/portcullis/tls/tls.key")
    assert env["PORTCULLIS_TRUSTED_PROXIES"] == "10.0.0.0/8,fd00::/8"
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": "authz-tls"}}]
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodMonitor"}
    assert sorted(monitors) == [f"{RELEASE}-authz", f"{RELEASE}-sidecars"]
    authz = monitors[f"{RELEASE}-authz"]["spec"]
    assert authz["podMetricsEndpoints"][0]["port"] == "portcullis-adm"
    labels = one(authorizer_docs(docs), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in authz["selector"]["matchLabels"].items())
    assert authz["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # A single replica has no PodDisruptionBudget (it would block every drain).
    single = render(chart, {"authorizer": {"enabled": True, "replicas": 1}})
    assert kinds(authorizer_docs(single)) == ["Deployment", "Service"]


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"authorizer": {"enabled": "yes"}}, "enabled"),
        ({"authorizer": {"replicas": 0}}, "replicas"),
        ({"authorizer": {"ports": {"listen": 0}}}, "listen"),
        ({"authorizer": {"tls": {"secretName": "Not_A_Name"}}}, "secretName"),
        ({"authorizer": {"trustedProxies": ["10.0.0.1"]}}, "trustedProxies"),
        ({"authorizer": {"replica": 3}}, "replica"),
    ],
)
def test_the_schema_checks_the_authorizer_values(chart, values, complaint):
    with pytest.raises(helm_python.HelmError) as refused:
        chart.validate_schema(values)
    assert complaint in str(refused.value)


# === CRDs ===


def test_chart_crds_are_the_generated_crds():
    top = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    ours = sorted(p.name for p in (CHART / "crds").iterdir())
    assert ours == top, "charts/portcullis/crds must hold exactly the YAML files of crds/"
    for name in top:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/portcullis/crds/{name} differs: cp crds/{name} charts/portcullis/crds/"
        )


def test_deploy_manifest_is_the_chart_rendered_with_defaults(chart):
    # render_deploy.py sits beside this file; pytest puts this folder on sys.path.
    import render_deploy

    want = render_deploy.render()
    have = render_deploy.DEPLOY.read_text() if render_deploy.DEPLOY.exists() else ""
    assert have == want, f"deploy/portcullis.yaml is stale: run `{render_deploy.REGENERATE}`"
    docs = [d for d in yaml.safe_load_all(have) if d]
    assert kinds(docs) == sorted(kinds(render(chart, namespace=render_deploy.NAMESPACE)) + ["Namespace"])
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": render_deploy.NAMESPACE}}
    assert all(d["metadata"].get("namespace", render_deploy.NAMESPACE) == render_deploy.NAMESPACE for d in docs)


def test_the_chart_loads_its_crds(chart):
    loaded = [d for c in chart.crds for d in yaml.safe_load_all(c["data"]) if d]
    names = {c["metadata"]["name"] for c in loaded}
    assert names == {"accessapplications.access.portcullis.dev", "accessservicetokens.access.portcullis.dev"}
