//! End-to-end harness against a real Kubernetes API server: whatever cluster `KUBECONFIG`
//! names. No kubelet is needed: Pod objects are created with a `status` the test writes itself
//! (`Running`, `podIP: 127.0.0.1`) and container ports that point at sidecar processes the test
//! starts on loopback, so the operator pushes to real sidecars as it would to real pods. Those
//! Pods carry a scheduling gate, so that on a cluster with nodes no scheduler binds them and no
//! kubelet overwrites the status the test wrote.
//!
//! The tests using it are `#[ignore = "needs a cluster: set KUBECONFIG"]`: `cargo test` lists
//! them as ignored, and `cargo test -- --ignored` (what tests/run.sh does when it has a
//! cluster) runs them; run that way without `KUBECONFIG`, they fail.
//!
//! The operator runs as its own binary with the least RBAC of `operator/rbac.yaml`: the test
//! binds those rules to a ServiceAccount and gives the operator a kubeconfig that impersonates
//! it, so a missing permission fails the suite as it would fail in a cluster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

use crate::{eventually, free_port, get, repo_root, tempdir::TempDir};

/// Field manager of everything the tests write.
const MANAGER: &str = "portcullis-e2e";

/// The reason on every test that needs a cluster (`#[ignore = …]` takes a literal, so the tests
/// repeat it; this names it once for the message below).
pub const NEEDS_A_CLUSTER: &str = "needs a cluster: set KUBECONFIG";

/// The cluster `KUBECONFIG` names. A test that needs one was asked for explicitly (it is
/// ignored otherwise), so without `KUBECONFIG` it fails rather than passing without running.
pub async fn connect(suite: &str) -> Client {
    let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) else {
        panic!(
            "{suite} {NEEDS_A_CLUSTER}. Point it at a cluster where you may create CRDs, namespaces \
             and RBAC (any API server will do: no kubelet is needed)."
        );
    };
    let kubeconfig = Kubeconfig::read_from(&path).expect("KUBECONFIG is readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("KUBECONFIG has a usable current context");
    Client::try_from(config).expect("a client for KUBECONFIG")
}

/// A fresh place to run the operator: the CRDs installed, the operator's namespace with its
/// ServiceAccount and RBAC, and an application namespace. Deleted by [`Setup::teardown`], or,
/// when a test panics before it, when the Setup is dropped: a run leaves no namespace, no
/// application and no cluster role behind.
pub struct Setup {
    pub client: Client,
    /// The operator's namespace.
    pub op_ns: String,
    /// The namespace of the applications and Pods.
    pub ns: String,
    /// The user the operator impersonates (its ServiceAccount).
    pub user: String,
    /// Namespaces made with [`Setup::namespace`], deleted with the others.
    more: std::sync::Mutex<Vec<String>>,
    torn_down: bool,
}

/// Prepares a [`Setup`] with namespaces named after `prefix` (panics when `KUBECONFIG` is unset).
pub async fn setup(suite: &str, prefix: &str) -> Setup {
    let client = connect(suite).await;
    install_crds(&client).await;
    let op_ns = unique(&format!("{prefix}-system"));
    let ns = unique(prefix);
    create_namespace(&client, &op_ns).await;
    create_namespace(&client, &ns).await;
    let user = operator_identity(&client, &op_ns).await;
    Setup { client, op_ns, ns, user, more: Default::default(), torn_down: false }
}

impl Setup {
    /// Creates namespace `name`, to be deleted with the setup's own.
    pub async fn namespace(&self, name: &str) {
        self.more.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_owned());
        create_namespace(&self.client, name).await;
    }

    /// Deletes what [`setup`] made: its namespaces (with everything in them) and the
    /// operator's ClusterRole and ClusterRoleBinding. The CRDs stay (other suites share them).
    pub async fn teardown(mut self) {
        self.torn_down = true;
        delete_made(&self.client, &self.namespaces(), &self.op_ns).await;
    }

    fn namespaces(&self) -> Vec<String> {
        let more = self.more.lock().unwrap_or_else(|e| e.into_inner()).clone();
        [self.ns.clone(), self.op_ns.clone()].into_iter().chain(more).collect()
    }
}

impl Drop for Setup {
    /// A test that panicked did not reach [`Setup::teardown`]: the same deletions, on a thread
    /// of their own (a `Drop` cannot await, and this may run inside the test's runtime).
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let (namespaces, op_ns) = (self.namespaces(), self.op_ns.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async {
                let client = connect("teardown").await;
                delete_made(&client, &namespaces, &op_ns).await;
            });
        });
        if cleanup.join().is_err() {
            eprintln!(
                "the cluster teardown failed: namespaces {namespaces:?} may remain",
                namespaces = self.namespaces()
            );
        }
    }
}

/// Deletes `namespaces` and the cluster roles of the operator of `op_ns`. The operator may have
/// stopped already: nothing would remove the applications' finalizer, and a namespace would stay
/// Terminating, so the finalizers go first.
async fn delete_made(client: &Client, namespaces: &[String], op_ns: &str) {
    let dp = kube::api::DeleteParams::default();
    let unfinalized = json!({"metadata": {"finalizers": null}});
    for ns in namespaces {
        let apps = Api::<portcullis_crds::v1alpha1::AccessApplication>::namespaced(client.clone(), ns);
        for app in apps.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let name = app.metadata.name.unwrap_or_default();
            let _ = apps.patch(&name, &PatchParams::default(), &Patch::Merge(&unfinalized)).await;
        }
        let _ = Api::<Namespace>::all(client.clone()).delete(ns, &dp).await;
    }
    for name in operator_cluster_roles(op_ns) {
        let _ = Api::<ClusterRoleBinding>::all(client.clone()).delete(&name, &dp).await;
        let _ = Api::<ClusterRole>::all(client.clone()).delete(&name, &dp).await;
    }
}

impl Setup {
    /// The push public key (base64) the operator keeps in its namespace, once it made it.
    pub async fn push_public_key(&self) -> String {
        secret_value(&Api::namespaced(self.client.clone(), &self.op_ns), "portcullis-push-key", "public-key").await
    }
}

/// A name unique to this run, for namespaces (without a namespace controller, as on a bare API
/// server, deleted namespaces linger, so runs never reuse one).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos)
}

/// Applies the generated CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    let text = std::fs::read_to_string(repo_root().join("crds/crds.yaml")).expect("crds.yaml");
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for doc in text.split("\n---").filter(|d| d.contains("kind:")) {
        let crd: CustomResourceDefinition = serde_yaml_ng::from_str(doc).expect("a CRD document");
        let name = crd.metadata.name.clone().expect("CRD name");
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        eventually(Duration::from_secs(30), &format!("CRD {name} established"), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                let conditions = crd.status?.conditions?;
                conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
            }
        })
        .await;
    }
}

pub async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
    // Pods need the namespace's `default` ServiceAccount; a bare API server (no controller
    // manager) does not create it. Applying it is a no-op where it exists.
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}});
    apply(&Api::<ServiceAccount>::namespaced(client.clone(), name), sa).await;
}

/// Applies a typed object with server-side apply.
pub async fn apply<K>(api: &Api<K>, object: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = object["metadata"]["name"].as_str().expect("metadata.name").to_owned();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

/// Creates the operator's ServiceAccount in `namespace` and binds `operator/rbac.yaml`'s rules
/// to it (the ClusterRole under a run-unique name, the Lease Role in `namespace`). Returns the
/// user name to impersonate.
pub async fn operator_identity(client: &Client, namespace: &str) -> String {
    let sa = "portcullis-operator";
    apply(
        &Api::<ServiceAccount>::namespaced(client.clone(), namespace),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}}),
    )
    .await;
    let subject = json!([{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]);
    for mut object in rbac_documents() {
        match object["kind"].as_str() {
            Some("ClusterRole") => {
                let name = cluster_role_name(&object, namespace);
                object["metadata"]["name"] = json!(name);
                apply(&Api::<ClusterRole>::all(client.clone()), object).await;
                let binding = json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                    "subjects": subject,
                });
                apply(&Api::<ClusterRoleBinding>::all(client.clone()), binding).await;
            }
            Some("Role") => {
                let name = object["metadata"]["name"].as_str().unwrap().to_owned();
                object["metadata"]["namespace"] = json!(namespace);
                apply(&Api::<Role>::namespaced(client.clone(), namespace), object).await;
                let binding = json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": name, "namespace": namespace},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                    "subjects": subject,
                });
                apply(&Api::<RoleBinding>::namespaced(client.clone(), namespace), binding).await;
            }
            other => panic!("operator/rbac.yaml: unexpected kind {other:?}"),
        }
    }
    format!("system:serviceaccount:{namespace}:{sa}")
}

fn rbac_documents() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo_root().join("operator/rbac.yaml")).expect("operator/rbac.yaml");
    text.split("\n---")
        .filter(|d| d.contains("kind:"))
        .map(|doc| serde_yaml_ng::from_str(doc).expect("an RBAC document"))
        .collect()
}

/// The run-unique name of one of `operator/rbac.yaml`'s ClusterRoles for an operator in `namespace`.
fn cluster_role_name(object: &serde_json::Value, namespace: &str) -> String {
    format!("{}-{namespace}", object["metadata"]["name"].as_str().expect("ClusterRole name"))
}

/// The names [`operator_identity`] gave the ClusterRoles (and their bindings) for `namespace`.
fn operator_cluster_roles(namespace: &str) -> Vec<String> {
    rbac_documents().iter().filter(|o| o["kind"] == "ClusterRole").map(|o| cluster_role_name(o, namespace)).collect()
}

/// Writes a copy of `KUBECONFIG` whose current user impersonates `user`.
fn impersonating_kubeconfig(dir: &Path, user: &str) -> PathBuf {
    let path = std::env::var_os("KUBECONFIG").expect("KUBECONFIG");
    let mut config = Kubeconfig::read_from(&path).expect("KUBECONFIG");
    let context = config.current_context.clone().expect("a current-context");
    let auth_name = config
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
        .expect("the current context names a user");
    let auth = config
        .auth_infos
        .iter_mut()
        .find(|a| a.name == auth_name)
        .and_then(|a| a.auth_info.as_mut())
        .expect("the current user");
    auth.impersonate = Some(user.to_owned());
    auth.impersonate_groups = Some(vec!["system:serviceaccounts".into(), "system:authenticated".into()]);
    let out = dir.join("kubeconfig");
    std::fs::write(&out, serde_yaml_ng::to_string(&config).expect("kubeconfig YAML")).expect("write kubeconfig");
    out
}

/// The operator binary next to this test executable.
pub fn operator_bin() -> PathBuf {
    let bin = crate::sidecar_bin().with_file_name("portcullis-operator");
    assert!(bin.exists(), "{} not found: run `cargo build --workspace --bins`", bin.display());
    bin
}

/// A running `portcullis-operator run` process, killed (by its PID) on drop.
pub struct Operator {
    pub child: Child,
    pub admin: std::net::SocketAddr,
    pub name: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Operator {
    /// Starts a replica named `name` in `namespace`, impersonating `user`.
    pub async fn start(namespace: &str, user: &str, name: &str) -> Self {
        let dir = TempDir::new("operator");
        let kubeconfig = impersonating_kubeconfig(dir.path(), user);
        let log = dir.path().join("operator.log");
        let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(operator_bin())
            .args(["run", "--namespace", namespace, "--admin-listen", &admin.to_string()])
            // Two replicas on one machine cannot share the webhook port, and this suite tests the
            // controllers; the chart's install test (tests/chart) covers the webhooks.
            .arg("--disable-webhook")
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", name)
            // Short, so that a test sees /healthz fail on stuck watches within its own bounds.
            .env("PORTCULLIS_WATCH_FAILURE_LIMIT", "30s")
            .env("RUST_LOG", "info,portcullis_operator=debug")
            // tracing's fmt layer writes to stdout; errors from main go to stderr.
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).expect("log file"))
            .spawn()
            .expect("start the operator");
        let op = Self { child, admin, name: name.to_owned(), log, _dir: dir };
        let url = format!("http://{admin}/healthz");
        let logs = op.log.clone();
        eventually(Duration::from_secs(30), "the operator's admin port", || {
            let url = url.clone();
            let logs = logs.clone();
            async move {
                let up = get(&url, &[]).await.ok().map(|_| ());
                if up.is_none() && std::fs::read_to_string(&logs).unwrap_or_default().contains("Error:") {
                    panic!("the operator failed:\n{}", std::fs::read_to_string(&logs).unwrap_or_default());
                }
                up
            }
        })
        .await;
        op
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The status `/healthz` answers (0 when it does not answer).
    pub async fn healthz(&self) -> u16 {
        get(&format!("http://{}/healthz", self.admin), &[]).await.map(|a| a.status).unwrap_or(0)
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin), &[]).await.map(|a| a.text()).unwrap_or_default()
    }

    /// SIGTERM, then waits for the process to end (a graceful stop hands the Lease over).
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident set size in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of operator replica {} ---\n{}", self.name, self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Pod object for a sidecar the test runs: its `portcullis` and `portcullis-adm` container
/// ports are the sidecar process's loopback ports. Its scheduling gate keeps it unscheduled.
pub fn sidecar_pod(name: &str, labels: serde_json::Value, traffic: u16, admin: u16) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"schedulingGates": [{"name": "access.portcullis.dev/host-process"}], "containers": [
            {"name": "app", "image": "registry.invalid/app:test"},
            {"name": "portcullis-sidecar", "image": "registry.invalid/portcullis-sidecar:test", "ports": [
                {"name": "portcullis", "containerPort": traffic},
                {"name": "portcullis-adm", "containerPort": admin},
            ]},
        ]},
    })
}

/// Starts `count` sidecars in cluster mode (trusting `push_key`, forwarding to `upstream`), each
/// behind a Running Pod object `<app>-<i>` labelled `app: <app>` in `pods`' namespace.
pub async fn running_sidecar_pods(
    pods: &Api<Pod>,
    ns: &str,
    app: &str,
    count: usize,
    upstream: &str,
    push_key: &str,
) -> Vec<crate::Sidecar> {
    let mut sidecars = Vec::new();
    for i in 0..count {
        let name = format!("{app}-{i}");
        let sc = crate::sidecar_without_manifests(upstream, push_key, ns, &name).await;
        let pod = sidecar_pod(&name, json!({"app": app}), sc.addr.port(), sc.admin.port());
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.expect("create pod");
        set_running(pods, &name, 0).await;
        sidecars.push(sc);
    }
    sidecars
}

/// Creates `count` real pods `<app>-<i>` labelled `app: <app>`, each running only the sidecar
/// container the injection webhook adds (`portcullis_operator::webhook::inject::container`,
/// image `image`, trusting `push_key`; no resources requested, so that many fit on one node), and
/// returns each one's traffic address (`http://<pod IP>:14080`) once its sidecar runs. Needs a
/// cluster with nodes that have the image and whose pod IPs this machine reaches.
pub async fn injected_pods(
    pods: &Api<Pod>,
    ns: &str,
    app: &str,
    count: usize,
    image: &str,
    push_key: &str,
) -> Vec<String> {
    use portcullis_operator::webhook::inject;
    let injection = portcullis_operator::webhook::Injection {
        image: image.to_owned(),
        image_pull_policy: "IfNotPresent".to_owned(),
        resources: Default::default(),
        push_public_key: push_key.to_owned(),
        operator_namespace: String::new(),
        traffic_port: 14080,
        admin_port: 14090,
    };
    let container = inject::container(&injection, 3000);
    for i in 0..count {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{app}-{i}"), "namespace": ns, "labels": {"app": app}},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 2},
        });
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.expect("create pod");
    }
    let mut addresses = Vec::new();
    for i in 0..count {
        let name = format!("{app}-{i}");
        let ip = eventually(Duration::from_secs(300), &format!("pod {name} running"), || async {
            let pod = pods.get(&name).await.ok()?;
            let status = pod.status?;
            let running =
                status.container_statuses?.iter().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
            running.then_some(status.pod_ip?)
        })
        .await;
        addresses.push(format!("http://{ip}:{}", injection.traffic_port));
    }
    addresses
}

/// Writes the status a kubelet would: Running on 127.0.0.1, the sidecar container restarted
/// `restarts` times (a restart is what makes the operator push a pod again).
pub async fn set_running(pods: &Api<Pod>, name: &str, restarts: i32) {
    let status = json!({"status": {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "containerStatuses": [{
            "name": "portcullis-sidecar", "image": "registry.invalid/portcullis-sidecar:test", "imageID": "",
            "ready": true, "restartCount": restarts, "state": {"running": {}},
        }],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("writing the status of pod {name}: {e}"));
}

/// Who holds the operator's leader Lease in `namespace` now (`None`: nobody, or no Lease yet).
pub async fn lease_holder(client: &Client, namespace: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), namespace).get_opt("portcullis-operator").await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// The value of `key` in Secret `name`, once it exists.
pub async fn secret_value(secrets: &Api<Secret>, name: &str, key: &str) -> String {
    eventually(Duration::from_secs(30), &format!("Secret {name} with {key}"), || async {
        let secret = secrets.get_opt(name).await.ok()??;
        let bytes = secret.data?.get(key)?.0.clone();
        String::from_utf8(bytes).ok()
    })
    .await
}
