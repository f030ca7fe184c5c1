#!/usr/bin/env python3
"""Validates weir's Kubernetes manifests. Run it through validate.sh, which
provides its dependencies (kubernetes-validate, jsonschema, PyYAML).

Three layers; an error in any of them fails the run:

1. Schemas. Every document of every *.yaml under the directory is checked,
   strictly (an unknown field is an error), against the Kubernetes API
   schemas of each --k8s-version, with kubernetes-validate. A kind that has
   no schema there is an error, not a warning to skip. The KEDA
   ScaledObject, a custom resource, is checked against
   schemas/keda-scaledobject-v1alpha1.json, and the HorizontalPodAutoscaler
   KEDA makes from it against the autoscaling/v2 schema. YAML with a
   duplicate key is an error (PyYAML would keep the last value silently).
2. kustomization.yaml lists exactly the manifests beside it.
3. Consistency that no schema sees: between documents (selectors match the
   pod labels, names referred to exist, the autoscaler and the worker agree
   on brokers, group and topic) and with the worker's contract (the admin
   port, probe paths, the state directory on a writable volume, a grace
   period longer than the revoke deadline, memory above the RocksDB
   budget, no committed secrets).
"""

import argparse
import json
import math
import re
import sys
import traceback
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import VersionNotSupportedError

# The lag metric optional/hpa.yaml scales on; src/telemetry/names.rs
# defines it.
LAG_METRIC = "weir_consumer_lag_committed_records"
# Seconds beyond the revoke deadline that shutdown may take (commit the
# offsets, leave the group, flush the producer) before the kubelet kills.
GRACE_MARGIN_S = 15
# Memory the worker needs beyond the RocksDB budget (WEIR_MEMORY_MIB): key
# actors, librdkafka's fetch queue and producer buffers, checkpoint files
# read whole by the S3 store. README.md has the arithmetic.
MEMORY_OVERHEAD_MIB = 256
# cef_alerts' defaults, where the manifests do not set a variable.
DEFAULTS = {"WEIR_REVOKE_DEADLINE_MS": "30000", "WEIR_MEMORY_MIB": "64"}
REQUIRED_ENV = (
    "WEIR_BROKERS",
    "WEIR_INPUT_TOPIC",
    "WEIR_OUTPUT_TOPIC",
    "WEIR_GROUP",
    "WEIR_CHECKPOINT_STORE",
    "WEIR_STATE_DIR",
    "WEIR_ADMIN_ADDR",
)
INTEGER_ENV = (
    "WEIR_CHECKPOINT_INTERVAL_MS",
    "WEIR_REVOKE_DEADLINE_MS",
    "WEIR_WINDOW_SECS",
    "WEIR_THRESHOLD",
    "WEIR_MEMORY_MIB",
    "WEIR_LIVE_ACTOR_CAP",
    "WEIR_STALL_AFTER",
    "WEIR_STALL_TIMEOUT",
    "WEIR_PRUNE_GRACE",
)
WORKLOAD_KINDS = ("StatefulSet", "Deployment")
# Fields the Kubernetes schemas type as free strings although the API
# server accepts only these values (field names unique enough to match by
# name anywhere in a core manifest).
ENUMS = {
    "podManagementPolicy": {"OrderedReady", "Parallel"},
    "imagePullPolicy": {"Always", "IfNotPresent", "Never"},
    "protocol": {"TCP", "UDP", "SCTP"},
    "whenUnsatisfiable": {"DoNotSchedule", "ScheduleAnyway"},
    "fsGroupChangePolicy": {"OnRootMismatch", "Always"},
    "whenDeleted": {"Retain", "Delete"},
    "whenScaled": {"Retain", "Delete"},
    "accessModes": {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"},
    "unhealthyPodEvictionPolicy": {"IfHealthyBudget", "AlwaysAllow"},
    "externalTrafficPolicy": {"Cluster", "Local"},
}


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects a key repeated in one mapping."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


class Doc:
    def __init__(self, path, index, body, rel):
        self.path = path
        self.body = body
        self.kind = body.get("kind")
        self.api = body.get("apiVersion")
        meta = body.get("metadata") or {}
        self.name = meta.get("name") if isinstance(meta, dict) else None
        self.where = f"{rel}[{index}] {self.kind}/{self.name}"


class Checker:
    def __init__(self, root, versions, so_schema):
        self.root = root
        self.versions = versions
        self.so_schema = so_schema
        self.errors = []
        self.docs = []

    def error(self, where, msg):
        line = f"{where}: {msg}"
        if line not in self.errors:
            self.errors.append(line)

    # ---- loading ---------------------------------------------------------

    def load(self):
        files = sorted(p for p in self.root.rglob("*") if p.suffix in (".yaml", ".yml"))
        manifests = [p for p in files if p.name not in ("kustomization.yaml", "kustomization.yml")]
        if not manifests:
            self.error(str(self.root), "no manifests found")
        for path in manifests:
            rel = path.relative_to(self.root)
            try:
                bodies = list(yaml.load_all(path.read_text(), Loader=StrictLoader))
            except yaml.YAMLError as e:
                self.error(str(rel), f"not valid YAML: {e}")
                continue
            count = 0
            for i, body in enumerate(bodies):
                if body is None:
                    continue
                count += 1
                if not isinstance(body, dict) or not all(
                    k in body for k in ("apiVersion", "kind", "metadata")
                ):
                    self.error(
                        f"{rel}[{i}]", "not a Kubernetes object (apiVersion, kind and metadata needed)"
                    )
                    continue
                self.docs.append(Doc(path, i, body, rel))
            if count == 0:
                self.error(str(rel), "holds no document")
        return [p for p in files if p not in manifests]

    # ---- layer 1: schemas ------------------------------------------------

    def check_core(self, body, where):
        for v in self.versions:
            try:
                kubernetes_validate.validate(body, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top level)"
                self.error(where, f"Kubernetes {v} schema: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                self.error(
                    where,
                    f"Kubernetes {v} has no {body.get('kind')} in {body.get('apiVersion')}"
                    " (a misspelt kind, or an API version it does not serve)",
                )

    def check_scaled_object(self, doc):
        validator = jsonschema.Draft202012Validator(self.so_schema)
        for e in sorted(validator.iter_errors(doc.body), key=lambda e: list(map(str, e.path))):
            path = ".".join(str(p) for p in e.path) or "(top level)"
            self.error(doc.where, f"ScaledObject schema: {path}: {e.message}")
        # KEDA turns the ScaledObject into an HPA; check that one against
        # the Kubernetes schema (this covers advanced...behavior).
        spec = doc.body.get("spec") or {}
        if not isinstance(spec, dict):
            return
        hpa_config = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
        target = spec.get("scaleTargetRef") or {}
        min_count = spec.get("minReplicaCount")
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": f"keda-hpa-{doc.name}"},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": target.get("apiVersion", "apps/v1"),
                    "kind": target.get("kind", "Deployment"),
                    "name": target.get("name", ""),
                },
                # KEDA's HPA never goes below 1; KEDA itself handles 0.
                "minReplicas": max(1, min_count) if isinstance(min_count, int) else 1,
                "maxReplicas": spec.get("maxReplicaCount", 100),
            },
        }
        where = f"{doc.where} (as the HorizontalPodAutoscaler KEDA creates)"
        if "behavior" in hpa_config:
            hpa["spec"]["behavior"] = hpa_config["behavior"]
            self.check_behavior(hpa_config["behavior"], where)
        self.check_core(hpa, where)

    def check_behavior(self, behavior, where):
        """The API server's rules for HPA scaling rules, which the schema
        leaves out (it types them as plain strings and integers)."""
        if not isinstance(behavior, dict):
            return
        for direction in ("scaleUp", "scaleDown"):
            rules = behavior.get(direction)
            if not isinstance(rules, dict):
                continue
            at = f"behavior.{direction}"
            window = rules.get("stabilizationWindowSeconds")
            if isinstance(window, int) and not 0 <= window <= 3600:
                self.error(where, f"{at}.stabilizationWindowSeconds {window}: 0 to 3600")
            if rules.get("selectPolicy", "Max") not in ("Max", "Min", "Disabled"):
                self.error(where, f"{at}.selectPolicy {rules.get('selectPolicy')!r}: Max, Min or Disabled")
            for i, policy in enumerate(rules.get("policies") or []):
                if not isinstance(policy, dict):
                    continue
                if policy.get("type") not in ("Pods", "Percent"):
                    self.error(where, f"{at}.policies.{i}.type {policy.get('type')!r}: Pods or Percent")
                value, period = policy.get("value"), policy.get("periodSeconds")
                if isinstance(value, int) and value <= 0:
                    self.error(where, f"{at}.policies.{i}.value {value}: must be positive")
                if isinstance(period, int) and not 0 < period <= 1800:
                    self.error(where, f"{at}.policies.{i}.periodSeconds {period}: 1 to 1800")

    def check_formats(self, node, where, path=""):
        """Enumerated values and quantities, which the schemas leave as
        free strings."""
        if isinstance(node, dict):
            for key, value in node.items():
                at = f"{path}.{key}" if path else str(key)
                allowed = ENUMS.get(key)
                if allowed is not None:
                    for v in value if isinstance(value, list) else [value]:
                        if isinstance(v, str) and v not in allowed:
                            self.error(where, f"{at}: {v!r} is not one of {sorted(allowed)}")
                if key in ("requests", "limits") and path.endswith("resources") and isinstance(value, dict):
                    for name, q in value.items():
                        if quantity(q) is None:
                            self.error(where, f"{at}.{name}: {q!r} is not a Kubernetes quantity")
                elif key == "sizeLimit" and quantity(value) is None:
                    self.error(where, f"{at}: {value!r} is not a Kubernetes quantity")
                else:
                    self.check_formats(value, where, at)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                self.check_formats(item, where, f"{path}.{i}")

    def check_schemas(self):
        for doc in self.docs:
            api = str(doc.api)
            group = api.split("/")[0] if "/" in api else ""
            if group == "" or "." not in group or group.endswith(".k8s.io"):
                self.check_core(doc.body, doc.where)
                self.check_formats(doc.body, doc.where)
            elif doc.api == "keda.sh/v1alpha1" and doc.kind == "ScaledObject":
                self.check_scaled_object(doc)
            else:
                self.error(
                    doc.where,
                    f"no schema known for {doc.api} {doc.kind}: add one to schemas/ and to validate.py",
                )

    # ---- layer 2: kustomization -------------------------------------------

    def check_kustomizations(self, kustomizations):
        applied = set()
        for k in kustomizations:
            rel = k.relative_to(self.root)
            try:
                body = yaml.load(k.read_text(), Loader=StrictLoader)
            except yaml.YAMLError as e:
                self.error(str(rel), f"not valid YAML: {e}")
                continue
            if not isinstance(body, dict):
                self.error(str(rel), "not a mapping")
                continue
            if (
                body.get("apiVersion") != "kustomize.config.k8s.io/v1beta1"
                or body.get("kind") != "Kustomization"
            ):
                self.error(str(rel), "apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
            resources = body.get("resources")
            if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
                self.error(str(rel), "resources must be a list of file names")
                continue
            if len(set(resources)) != len(resources):
                self.error(str(rel), "resources lists a file twice")
            listed = set()
            for r in resources:
                p = (k.parent / r).resolve()
                if not p.is_file():
                    self.error(str(rel), f"resources: {r} does not exist")
                listed.add(p)
            beside = {p.resolve() for p in k.parent.iterdir() if p.suffix in (".yaml", ".yml") and p != k}
            for p in sorted(beside - listed):
                self.error(str(rel), f"{p.name} is not listed in resources")
            applied |= listed
        return applied

    # ---- layer 3: consistency ----------------------------------------------

    def by_kind(self, kind):
        return [d for d in self.docs if d.kind == kind]

    def find(self, kind, name):
        for d in self.docs:
            if d.kind == kind and d.name == name:
                return d
        return None

    @staticmethod
    def pod_labels(workload):
        return (((workload.body.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "labels"
        ) or {}

    @staticmethod
    def matches(selector, labels):
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    def workloads_selected(self, selector):
        return [
            w for w in self.docs if w.kind in WORKLOAD_KINDS and self.matches(selector, self.pod_labels(w))
        ]

    def container_env(self, w, c):
        """The container's environment: name -> value, or ("fieldRef", path)."""
        env = {}
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                ref = src["configMapRef"]
                cm = self.find("ConfigMap", ref.get("name"))
                if cm is None:
                    if not ref.get("optional"):
                        self.error(
                            w.where, f"envFrom: ConfigMap {ref.get('name')} is not among the manifests"
                        )
                    continue
                env.update({src.get("prefix", "") + k: v for k, v in (cm.body.get("data") or {}).items()})
            if "secretRef" in src and not src["secretRef"].get("optional"):
                self.error(
                    w.where,
                    f"envFrom: Secret {src['secretRef'].get('name')} must be optional: true"
                    " (no Secret is part of these manifests)",
                )
        for e in c.get("env") or []:
            name = e.get("name")
            if "value" in e:
                env[name] = e["value"]
                continue
            source = e.get("valueFrom") or {}
            if "fieldRef" in source:
                env[name] = ("fieldRef", source["fieldRef"].get("fieldPath"))
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                cm = self.find("ConfigMap", ref.get("name"))
                value = (cm.body.get("data") or {}).get(ref.get("key")) if cm else None
                if value is None and not ref.get("optional"):
                    self.error(
                        w.where, f"env {name}: ConfigMap key {ref.get('name')}/{ref.get('key')} not found"
                    )
                if value is not None:
                    env[name] = value
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                if not ref.get("optional"):
                    self.error(w.where, f"env {name}: secretKeyRef {ref.get('name')} must be optional: true")
                env[name] = ("secret", ref.get("name"))
        return env

    def check_workload(self, w, autoscaled):
        spec = w.body.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        labels = self.pod_labels(w)
        annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
        selector = spec.get("selector") or {}
        if selector.get("matchExpressions") or not self.matches(selector.get("matchLabels"), labels):
            self.error(w.where, "spec.selector.matchLabels must be set and match the pod template's labels")

        if spec.get("replicas") is not None and autoscaled:
            self.error(
                w.where,
                "spec.replicas is set although an autoscaler owns the count: every apply would reset it",
            )

        if w.kind == "StatefulSet":
            svc = self.find("Service", spec.get("serviceName"))
            if svc is None:
                self.error(
                    w.where, f"serviceName {spec.get('serviceName')} is not a Service of these manifests"
                )
            elif (svc.body.get("spec") or {}).get("clusterIP") != "None":
                self.error(w.where, f"serviceName {svc.name} must be a headless Service (clusterIP: None)")

        if pod.get("enableServiceLinks") is not False:
            self.error(
                w.where,
                "enableServiceLinks must be false: service links put *_SERVICE_HOST/*_PORT variables"
                " into the environment, where a Service named weir-... would land in the WEIR_ flag namespace",
            )

        admin = [
            (c, p)
            for c in pod.get("containers") or []
            for p in c.get("ports") or []
            if p.get("name") == "admin"
        ]
        if len(admin) != 1:
            self.error(w.where, "exactly one container must have a port named admin (the worker)")
            return
        c, port = admin[0]
        cw = f"{w.where} container {c.get('name')}"
        admin_port = port.get("containerPort")
        env = self.container_env(w, c)
        for k, v in DEFAULTS.items():
            env.setdefault(k, v)

        for name in REQUIRED_ENV:
            if name not in env:
                self.error(cw, f"{name} is not set (ConfigMap or env)")
        for name in INTEGER_ENV:
            v = env.get(name)
            if v is not None and not (isinstance(v, str) and re.fullmatch(r"[0-9]+", v)):
                self.error(cw, f"{name}={v!r} is not a non-negative integer")
        if env.get("WEIR_LOG_FORMAT", "human") not in ("human", "json"):
            self.error(cw, f"WEIR_LOG_FORMAT={env['WEIR_LOG_FORMAT']!r}: human or json")
        store = env.get("WEIR_CHECKPOINT_STORE")
        if isinstance(store, str) and not store.startswith("s3://"):
            self.error(
                cw,
                f"WEIR_CHECKPOINT_STORE={store!r}: every worker must reach the same store (s3://...);"
                " a directory on a pod's own volume is seen by that pod only",
            )

        instance = env.get("WEIR_GROUP_INSTANCE_ID")
        if w.kind == "StatefulSet" and instance != ("fieldRef", "metadata.name"):
            self.error(
                cw, "WEIR_GROUP_INSTANCE_ID must come from fieldRef metadata.name (the stable pod name)"
            )
        if w.kind == "Deployment" and instance is not None:
            self.error(
                cw,
                "WEIR_GROUP_INSTANCE_ID with a Deployment: its pod names change on every restart, so"
                " static membership would only leave stale members until session.timeout.ms",
            )

        addr = env.get("WEIR_ADMIN_ADDR")
        if isinstance(addr, str):
            m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[^:]+):([0-9]+)", addr)
            if not m:
                self.error(cw, f"WEIR_ADMIN_ADDR={addr!r} is not HOST:PORT")
            else:
                if m.group(1) not in ("0.0.0.0", "[::]"):
                    self.error(
                        cw, f"WEIR_ADMIN_ADDR={addr!r}: bind 0.0.0.0 or [::], or probes cannot reach it"
                    )
                if int(m.group(2)) != admin_port:
                    self.error(
                        cw, f"WEIR_ADMIN_ADDR port {m.group(2)} is not the admin containerPort {admin_port}"
                    )

        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (c.get(probe) or {}).get("httpGet")
            if not get:
                self.error(cw, f"{probe} must be an httpGet of {path}")
                continue
            if get.get("path") != path:
                self.error(cw, f"{probe} path {get.get('path')!r}: the worker serves {path}")
            if get.get("port") not in ("admin", admin_port):
                self.error(cw, f"{probe} port {get.get('port')!r} is not the admin port")

        if annotations.get("prometheus.io/scrape") != "true":
            self.error(w.where, 'pod annotation prometheus.io/scrape must be "true"')
        if annotations.get("prometheus.io/port") != str(admin_port):
            self.error(w.where, f'pod annotation prometheus.io/port must be "{admin_port}" (the admin port)')
        if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
            self.error(w.where, "pod annotation prometheus.io/path must be /metrics")

        deadline = env.get("WEIR_REVOKE_DEADLINE_MS")
        if isinstance(deadline, str) and deadline.isdigit():
            need = math.ceil(int(deadline) / 1000) + GRACE_MARGIN_S
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace < need:
                self.error(
                    w.where,
                    f"terminationGracePeriodSeconds {grace} < revoke deadline {int(deadline) / 1000:g} s"
                    f" + {GRACE_MARGIN_S} s: the final checkpoints would be killed",
                )
        if (c.get("lifecycle") or {}).get("preStop"):
            self.error(
                cw, "a preStop hook delays SIGTERM and eats into the grace period; the worker needs none"
            )

        state_dir = env.get("WEIR_STATE_DIR")
        mounts = {m.get("mountPath"): m for m in c.get("volumeMounts") or []}
        if isinstance(state_dir, str):
            m = mounts.get(state_dir.rstrip("/") or "/")
            if m is None:
                self.error(
                    cw, f"WEIR_STATE_DIR {state_dir} is not a volumeMount (the root filesystem is read-only)"
                )
            elif m.get("readOnly"):
                self.error(cw, f"the volume at WEIR_STATE_DIR {state_dir} is mounted read-only")
            else:
                claims = {t.get("metadata", {}).get("name") for t in spec.get("volumeClaimTemplates") or []}
                volumes = {v.get("name") for v in pod.get("volumes") or []}
                if m.get("name") not in claims | volumes:
                    self.error(cw, f"volumeMount {m.get('name')} names no volume or volumeClaimTemplate")

        psc = pod.get("securityContext") or {}
        csc = c.get("securityContext") or {}
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            self.error(cw, "runAsNonRoot must be true")
        if csc.get("readOnlyRootFilesystem") is not True:
            self.error(cw, "readOnlyRootFilesystem must be true")
        if csc.get("allowPrivilegeEscalation") is not False:
            self.error(cw, "allowPrivilegeEscalation must be false")

        resources = c.get("resources") or {}
        req = quantity((resources.get("requests") or {}).get("memory"))
        lim = quantity((resources.get("limits") or {}).get("memory"))
        if not (resources.get("requests") or {}).get("cpu"):
            self.error(cw, "resources.requests.cpu is not set")
        budget = env.get("WEIR_MEMORY_MIB")
        if req is None or lim is None:
            self.error(cw, "resources.requests.memory and resources.limits.memory must be set")
        elif isinstance(budget, str) and budget.isdigit():
            need = (int(budget) + MEMORY_OVERHEAD_MIB) * 2**20
            if req < need:
                self.error(
                    cw,
                    f"requests.memory {req / 2**20:g}Mi < WEIR_MEMORY_MIB {budget} + {MEMORY_OVERHEAD_MIB} Mi"
                    " (RocksDB budget plus the rest of the worker)",
                )
            if lim < req:
                self.error(cw, "limits.memory is below requests.memory")

        image = c.get("image", "")
        tail = image.rsplit("/", 1)[-1]
        if "@" not in image and (":" not in tail or tail.endswith(":latest")):
            self.error(cw, f"image {image!r}: pin a version tag or digest, not latest")

    def check_services(self):
        services = self.by_kind("Service")
        if not any(
            p.get("name") == "admin" for s in services for p in (s.body.get("spec") or {}).get("ports") or []
        ):
            self.error("Service", "no Service exposes a port named admin (metrics)")
        for s in services:
            spec = s.body.get("spec") or {}
            targets = self.workloads_selected(spec.get("selector"))
            if not targets:
                self.error(s.where, "its selector matches the pods of no workload in these manifests")
                continue
            for p in spec.get("ports") or []:
                target = p.get("targetPort", p.get("port"))
                for w in targets:
                    ports = [
                        q
                        for c in ((w.body["spec"].get("template") or {}).get("spec") or {}).get("containers")
                        or []
                        for q in c.get("ports") or []
                    ]
                    if not any(target in (q.get("name"), q.get("containerPort")) for q in ports):
                        self.error(
                            s.where, f"targetPort {target!r} is no container port of {w.kind}/{w.name}"
                        )

    def check_pdbs(self):
        for d in self.by_kind("PodDisruptionBudget"):
            spec = d.body.get("spec") or {}
            sel = (spec.get("selector") or {}).get("matchLabels")
            if not self.workloads_selected(sel):
                self.error(d.where, "its selector matches the pods of no workload in these manifests")
            if "minAvailable" in spec:
                self.error(
                    d.where,
                    "use maxUnavailable: with minAvailable and a single replica (minReplicaCount 1)"
                    " no drain could ever evict the pod",
                )

    def autoscaler_target(self, d, ref):
        w = self.find(ref.get("kind"), ref.get("name"))
        if w is None or w.kind not in WORKLOAD_KINDS or ref.get("apiVersion", "apps/v1") != "apps/v1":
            self.error(
                d.where,
                f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is no workload of these manifests",
            )
            return None
        return w

    def worker_env(self, w):
        pod = ((w.body.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in pod.get("containers") or []:
            if any(p.get("name") == "admin" for p in c.get("ports") or []):
                return self.container_env(w, c)
        return {}

    def check_autoscalers(self, applied):
        scaled = {}
        maxima = {}
        for d in self.by_kind("ScaledObject"):
            spec = d.body.get("spec") or {}
            w = self.autoscaler_target(d, spec.get("scaleTargetRef") or {})
            if w is None:
                continue
            scaled.setdefault(w.name, []).append(d)
            maxima[d.where] = spec.get("maxReplicaCount")
            if not isinstance(spec.get("minReplicaCount"), int) or spec["minReplicaCount"] < 1:
                self.error(
                    d.where,
                    "minReplicaCount must be at least 1 (KEDA's default is 0): with no worker running,"
                    " windows are not closed on processing time",
                )
            if "maxReplicaCount" not in spec:
                self.error(d.where, "maxReplicaCount must be set (to the input topic's partition count)")
            kafka = [t for t in spec.get("triggers") or [] if t.get("type") == "kafka"]
            if not kafka:
                self.error(d.where, "no kafka trigger")
            env = self.worker_env(w)
            for t in kafka:
                md = t.get("metadata") or {}
                for key, var in (
                    ("bootstrapServers", "WEIR_BROKERS"),
                    ("consumerGroup", "WEIR_GROUP"),
                    ("topic", "WEIR_INPUT_TOPIC"),
                ):
                    if md.get(key) != env.get(var):
                        self.error(
                            d.where,
                            f"trigger {key} {md.get(key)!r} differs from the worker's {var} {env.get(var)!r}",
                        )
                if md.get("allowIdleConsumers") == "true":
                    self.error(
                        d.where, 'allowIdleConsumers "true": replicas beyond the partition count sit idle'
                    )
                if md.get("offsetResetPolicy") != "earliest":
                    self.error(
                        d.where,
                        'offsetResetPolicy must be "earliest" (KEDA\'s default is latest), as the worker'
                        " reads a partition with no committed offset from its beginning",
                    )
        for d in self.by_kind("HorizontalPodAutoscaler"):
            spec = d.body.get("spec") or {}
            w = self.autoscaler_target(d, spec.get("scaleTargetRef") or {})
            if w is None:
                continue
            scaled.setdefault(w.name, []).append(d)
            maxima[d.where] = spec.get("maxReplicas")
            self.check_behavior(spec.get("behavior"), d.where)
            if spec.get("minReplicas", 1) < 1:
                self.error(d.where, "minReplicas must be at least 1")
            names = [
                ((m.get("external") or {}).get("metric") or {}).get("name")
                for m in spec.get("metrics") or []
                if m.get("type") == "External"
            ]
            if LAG_METRIC not in names:
                self.error(d.where, f"no External metric {LAG_METRIC}")
            metrics_src = Path(__file__).resolve().parents[2] / "src" / "telemetry" / "names.rs"
            if metrics_src.is_file() and f'"{LAG_METRIC}"' not in metrics_src.read_text():
                self.error(d.where, f"{LAG_METRIC} is no longer defined in src/telemetry/names.rs")
        if len({m for m in maxima.values()}) > 1:
            self.error(
                "autoscalers",
                "the ScaledObject and the HPA disagree on the maximum replica count: "
                + ", ".join(f"{k}: {v}" for k, v in sorted(maxima.items())),
            )
        for name, owners in scaled.items():
            together = [d for d in owners if d.path.resolve() in applied]
            if len(together) > 1:
                self.error(
                    f"kustomization (StatefulSet/{name})",
                    "more than one autoscaler is applied for it: " + ", ".join(d.where for d in together),
                )
        return {name for name, owners in scaled.items() if any(d.path.resolve() in applied for d in owners)}

    def check_consistency(self, applied):
        if self.by_kind("Secret"):
            for d in self.by_kind("Secret"):
                self.error(d.where, "no Secret manifests here: credentials stay out of the repository")
        autoscaled = self.check_autoscalers(applied)
        workloads = [d for d in self.docs if d.kind in WORKLOAD_KINDS]
        if not workloads:
            self.error(str(self.root), "no StatefulSet or Deployment")
        for w in workloads:
            self.check_workload(w, w.name in autoscaled)
        self.check_services()
        self.check_pdbs()


def quantity(value):
    """A Kubernetes quantity as a number (bytes, cores), None when unset or
    not a quantity."""
    if value is None or isinstance(value, bool):
        return None
    m = re.fullmatch(
        r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:([KMGTPE]i|[numkMGTPE])|[eE]([+-]?[0-9]+))?", str(value)
    )
    if not m:
        return None
    binary = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
    decimal = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
    suffix, exponent = m.group(2), m.group(3)
    if suffix in binary:
        scale = 1024 ** binary[suffix]
    elif suffix:
        scale = 10.0 ** decimal[suffix]
    else:
        scale = 10.0 ** int(exponent or 0)
    return float(m.group(1)) * scale


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path, help="directory of manifests (searched recursively)")
    ap.add_argument(
        "--k8s-version",
        action="append",
        required=True,
        help="Kubernetes version to validate against (repeatable)",
    )
    ap.add_argument("--scaledobject-schema", type=Path, required=True)
    args = ap.parse_args()

    so_schema = json.loads(args.scaledobject_schema.read_text())
    jsonschema.Draft202012Validator.check_schema(so_schema)
    checker = Checker(args.dir.resolve(), args.k8s_version, so_schema)
    kustomizations = checker.load()
    try:
        checker.check_schemas()
        applied = checker.check_kustomizations(kustomizations)
        checker.check_consistency(applied)
    except VersionNotSupportedError as e:
        print(f"validate: {e.message}", file=sys.stderr)
        return 2
    except Exception:  # a shape the checks did not expect: still a failure
        traceback.print_exc()
        checker.error("validate.py", "the checks stopped on a malformed manifest (traceback above)")

    files = sorted({d.path for d in checker.docs})
    for d in checker.docs:
        bad = any(e.startswith(d.where) for e in checker.errors)
        print(f"{'FAIL' if bad else 'ok  '} {d.where}")
    for k in kustomizations:
        print(f"     {k.relative_to(checker.root)} (kustomization)")
    versions = ", ".join(args.k8s_version)
    if checker.errors:
        print(f"\n{len(checker.errors)} error(s):", file=sys.stderr)
        for e in checker.errors:
            print(f"  {e}", file=sys.stderr)
        print(
            f"validate: {len(checker.docs)} documents in {len(files)} files, Kubernetes {versions}:"
            f" {len(checker.errors)} error(s)",
            file=sys.stderr,
        )
        return 1
    print(
        f"validate: {len(checker.docs)} documents in {len(files)} files valid against Kubernetes {versions} (strict),"
        " the ScaledObject schema and the consistency checks"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
