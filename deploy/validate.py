#!/usr/bin/env python3
"""Checks of the deployment files that schemas cannot make: what Switchyard itself needs from them.

`./stack test` runs it after the schema checks (kubernetes-validate on the rendered manifests,
nginx -t, haproxy -c, hadolint), with the Python of its validation venv (PyYAML and jsonschema):

    validate.py --k8s base=RENDERED.yaml --k8s production=RENDERED.yaml[:external-secret,...]
                [--k8s in-cluster-redis=RENDERED.yaml[:external-secret,...]]
                --compose deploy/docker-compose.yml [--compose-schema compose-spec.json]

Kubernetes: every Deployment has probes on its real ports, resources, a non-root read-only
securityContext, scrape annotations that point at a real port, a Service with a `metrics` port;
the gateway's grace period covers preStop + drain; the autoscaled Deployments leave `replicas` to
their HorizontalPodAutoscaler; PodDisruptionBudgets select real Pods; the Ingress routes / and /ws
to the gateway without stickiness and with long timeouts; and the NetworkPolicies, evaluated,
let each component reach exactly the ports it needs (the gateway: Redis, never MongoDB).

Where Redis runs in the cluster (a StatefulSet `redis`, components/redis): one replica with
append-only persistence (`--appendonly yes`, `--appendfsync everysec` or `always`, no eviction)
whose data directory is on a PersistentVolumeClaim, the same Pod and container hardening as the
Deployments, the `redis` Service in front of it on 6379, and NetworkPolicies that admit the
components that use Redis and no one else.

Compose: every service can be built or pulled, the front door depends on every gateway, the files
it mounts exist, and (with --compose-schema) the file matches the Compose specification's schema.

Prints every problem found, then exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import posixpath
import re
import sys
from pathlib import Path

import yaml

PART_OF = {"app.kubernetes.io/part-of": "switchyard"}
SERVICES = ["gateway", "auth-service", "chat-service", "mailer"]
AUTOSCALED = ["gateway", "chat-service"]
WITH_PDB = ["gateway", "auth-service", "chat-service"]
DNS = {("UDP", 53), ("TCP", 53)}
REDIS = ("TCP", 6379)
MONGODB = ("TCP", 27017)
SMTP = {("TCP", 25), ("TCP", 465), ("TCP", 587)}
# What each component must be able to reach, and everything it may.
EGRESS_NEEDED = {
    "gateway": {REDIS},
    "auth-service": {REDIS, MONGODB},
    "chat-service": {REDIS, MONGODB},
    "mailer": {REDIS, MONGODB, ("TCP", 587)},
}
EGRESS_ALLOWED = {
    "gateway": DNS | {REDIS},
    "auth-service": DNS | {REDIS, MONGODB},
    "chat-service": DNS | {REDIS, MONGODB},
    "mailer": DNS | {REDIS, MONGODB} | SMTP,
    # An in-cluster Redis (components/redis) opens no connections of its own.
    "redis": DNS,
}
# An in-cluster Redis: the StatefulSet's name, and the components that may connect to it (those that
# need Redis), with the port.
REDIS_STATEFULSET = "redis"
INGRESS_FROM_PODS = {"redis": (REDIS, {c for c, needed in EGRESS_NEEDED.items() if REDIS in needed})}
# The namespaces each component may be reached from (the rest: Prometheus only).
INGRESS_FROM_NAMESPACES = {
    "gateway": {"ingress-nginx", "monitoring"},
    # Its file port takes uploads and downloads from the ingress controller.
    "chat-service": {"ingress-nginx", "monitoring"},
    "redis": set(),
}
# Labels of Pods that are none of the components (any other Pod of the namespace, a stray Pod of
# Switchyard's): a policy whose selector matches them admits strangers.
STRANGERS = [{}, dict(PART_OF)]
# Where redis-server keeps its files without --dir: the working directory, /data in the official image.
REDIS_DEFAULT_DIR = "/data"
# Where the gateway's drain time comes from, and what is added on top to close the sockets.
DRAIN_KEY = "SWITCHYARD__GATEWAY__DRAIN_MS"
CLOSE_MARGIN_SECS = 5


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def check(self, condition: object, where: str, message: str) -> bool:
        if not condition:
            self.add(where, message)
        return bool(condition)


# ---------------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------------


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a set of labels."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def port_set(rule: dict) -> set[tuple[str, int]] | None:
    """The (protocol, port) pairs a NetworkPolicy rule opens; None means every port."""
    ports = rule.get("ports")
    if not ports:
        return None
    return {(p.get("protocol", "TCP"), p["port"]) for p in ports if isinstance(p.get("port"), int)}


def sleep_seconds(container: dict) -> int:
    """Seconds a preStop hook sleeps: an exec of sleep N, or the sleep action."""
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = (pre_stop.get("exec") or {}).get("command") or []
    if command and command[0].endswith("sleep") and len(command) == 2:
        return int(command[1])
    return 0


def redis_options(container: dict) -> dict[str, str]:
    """The `--name value` options on a container's command line (command and args), lower-cased."""
    words = [w for part in (container.get("command") or []) + (container.get("args") or []) for w in str(part).split()]
    options = {}
    for i, word in enumerate(words):
        if word.startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("--"):
            options[word[2:].lower()] = words[i + 1].strip("'\"").lower()
    return options


def check_pod_security(where: str, pod: dict, problems: Problems) -> None:
    """What every Pod of Switchyard's has: no service-account token, non-root, RuntimeDefault seccomp."""
    problems.check(pod.get("automountServiceAccountToken") is False, where, "mounts a service account token it does not use")
    pod_security = pod.get("securityContext") or {}
    problems.check(pod_security.get("runAsNonRoot") is True, where, "runAsNonRoot is not set")
    problems.check((pod_security.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where, "no RuntimeDefault seccomp profile")


def check_container(cwhere: str, container: dict, problems: Problems) -> None:
    """What every container of Switchyard's has: a fixed image tag, resources, a locked-down securityContext."""
    image = container.get("image", "")
    problems.check(re.search(r":[^/]+$", image) and not image.endswith(":latest"), cwhere, f"image {image!r} has no fixed tag")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            problems.check(resource in (resources.get(kind) or {}), cwhere, f"no {resource} {kind}")
    security = container.get("securityContext") or {}
    problems.check(security.get("readOnlyRootFilesystem") is True, cwhere, "root filesystem is writable")
    problems.check(security.get("allowPrivilegeEscalation") is False, cwhere, "allows privilege escalation")
    problems.check("ALL" in ((security.get("capabilities") or {}).get("drop") or []), cwhere, "does not drop all capabilities")


def check_redis(name: str, statefulset: dict, services: dict[str, dict], problems: Problems) -> dict:
    """An in-cluster Redis: persistence Switchyard relies on, data on a claim, the Service in front.
    Returns its Pods' labels."""
    where = f"{name}: StatefulSet {statefulset['metadata']['name']}"
    spec = statefulset["spec"]
    template = spec["template"]
    labels = template["metadata"].get("labels") or {}
    pod = template["spec"]
    problems.check(selector_matches(spec.get("selector"), labels), where, "selector does not match its Pods")
    problems.check(all(labels.get(k) == v for k, v in PART_OF.items()), where, "Pods lack app.kubernetes.io/part-of: switchyard")
    problems.check(spec.get("replicas", 1) == 1, where, "more than one replica: each would be a separate Redis, not a copy")
    check_pod_security(where, pod, problems)

    containers = [c for c in pod.get("containers") or [] if any("redis-server" in str(w) for w in (c.get("command") or []) + (c.get("args") or []))]
    if not problems.check(containers, where, "no container runs redis-server"):
        return labels
    container = containers[0]
    cwhere = f"{where} container {container.get('name')}"
    check_container(cwhere, container, problems)
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    problems.check(REDIS[1] in ports.values(), cwhere, f"does not listen on {REDIS[1]}")
    for probe in ("livenessProbe", "readinessProbe"):
        handler = container.get(probe) or {}
        problems.check(handler, cwhere, f"no {probe}")
        port = (handler.get("tcpSocket") or handler.get("httpGet") or {}).get("port")
        if port is not None:
            problems.check(port in ports or port in ports.values(), cwhere, f"{probe} port {port!r} is not a port of the container")

    # Accepted work lives in its streams: append-only, flushed at least every second, never evicted.
    options = redis_options(container)
    problems.check(options.get("appendonly") == "yes", cwhere, "does not run with --appendonly yes: a restart would lose the accepted work in its streams")
    problems.check(options.get("appendfsync") in ("everysec", "always"), cwhere, "does not run with --appendfsync everysec (or always)")
    policy = options.get("maxmemory-policy", "noeviction")
    problems.check(policy == "noeviction", cwhere, f"--maxmemory-policy {policy} would evict accepted work and histories when memory is full")

    # The data directory is on a PersistentVolumeClaim (the StatefulSet's own, or a named claim).
    data_dir = posixpath.normpath(posixpath.join(container.get("workingDir") or REDIS_DEFAULT_DIR, options.get("dir", ".")))
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []}
    claims |= {v["name"] for v in pod.get("volumes") or [] if "persistentVolumeClaim" in v}
    mounts = [m for m in container.get("volumeMounts") or [] if data_dir == m["mountPath"].rstrip("/") or data_dir.startswith(m["mountPath"].rstrip("/") + "/")]
    mount = max(mounts, key=lambda m: len(m["mountPath"]), default=None)
    problems.check(mount is not None and mount["name"] in claims, cwhere, f"its data directory {data_dir} is not on a PersistentVolumeClaim")

    # The `redis` Service the services connect to (redis://redis:6379) leads to it.
    service = services.get("redis")
    if problems.check(service is not None and service["spec"].get("type") != "ExternalName", where, "the Service redis is missing or still an ExternalName"):
        problems.check(selector_matches({"matchLabels": service["spec"].get("selector") or {}}, labels) and service["spec"].get("selector"), where, "the Service redis does not select its Pods")
        targets = [ports.get(p.get("targetPort"), p.get("targetPort", p.get("port"))) for p in service["spec"].get("ports") or [] if p.get("port") == REDIS[1]]
        problems.check(REDIS[1] in targets, where, f"the Service redis does not forward port {REDIS[1]} to it")
    return labels


def check_k8s(name: str, docs: list[dict], external_secrets: set[str], problems: Problems) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind.get("Deployment", {})
    services = by_kind.get("Service", {})
    config_maps = by_kind.get("ConfigMap", {})
    secrets = set(by_kind.get("Secret", {})) | external_secrets
    hpas = by_kind.get("HorizontalPodAutoscaler", {})
    pdbs = by_kind.get("PodDisruptionBudget", {})
    policies = list(by_kind.get("NetworkPolicy", {}).values())

    for service in SERVICES:
        problems.check(service in deployments, name, f"no Deployment {service}")

    pod_labels: dict[str, dict] = {}
    for dep_name, dep in deployments.items():
        where = f"{name}: Deployment {dep_name}"
        spec = dep["spec"]
        template = spec["template"]
        labels = template["metadata"].get("labels") or {}
        pod_labels[dep_name] = labels
        annotations = template["metadata"].get("annotations") or {}
        pod = template["spec"]
        problems.check(selector_matches(spec.get("selector"), labels), where, "selector does not match its Pods")
        problems.check(all(labels.get(k) == v for k, v in PART_OF.items()), where, "Pods lack app.kubernetes.io/part-of: switchyard")
        check_pod_security(where, pod, problems)
        if dep_name in AUTOSCALED:
            problems.check("replicas" not in spec, where, "sets replicas although a HorizontalPodAutoscaler owns the count")

        containers = pod.get("containers") or []
        ports_by_name: dict[str, int] = {}
        for container in containers:
            cwhere = f"{where} container {container.get('name')}"
            check_container(cwhere, container, problems)
            image = container.get("image", "")
            if name == "production":
                registry = image.split("/")[0]
                problems.check("." in registry or ":" in registry, cwhere, f"image {image!r} names no registry")
            for port in container.get("ports") or []:
                if "name" in port:
                    ports_by_name[port["name"]] = port["containerPort"]
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                http_get = (container.get(probe) or {}).get("httpGet") or {}
                problems.check(http_get.get("path") == path, cwhere, f"{probe} does not GET {path}")
                port = http_get.get("port")
                problems.check(port in ports_by_name or port in ports_by_name.values(), cwhere, f"{probe} port {port!r} is not a port of the container")
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    ref = source["configMapRef"]["name"]
                    problems.check(ref in config_maps, cwhere, f"envFrom ConfigMap {ref} does not exist")
                if "secretRef" in source:
                    ref = source["secretRef"]["name"]
                    problems.check(ref in secrets, cwhere, f"envFrom Secret {ref} does not exist")
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    problems.check(ref["name"] in secrets, cwhere, f"{env['name']} comes from Secret {ref['name']}, which does not exist")
                    secret = by_kind.get("Secret", {}).get(ref["name"])
                    if secret is not None:
                        keys = set(secret.get("stringData") or {}) | set(secret.get("data") or {})
                        problems.check(ref["key"] in keys, cwhere, f"Secret {ref['name']} has no key {ref['key']}")

        problems.check(annotations.get("prometheus.io/scrape") == "true", where, "prometheus.io/scrape is not \"true\"")
        problems.check(annotations.get("prometheus.io/path") == "/metrics", where, "prometheus.io/path is not /metrics")
        scrape_port = annotations.get("prometheus.io/port")
        problems.check(scrape_port is not None and int(scrape_port) in ports_by_name.values(), where, f"prometheus.io/port {scrape_port!r} is not a container port")

        # A Service selects the Pods and offers the metrics port under the name `metrics`.
        selecting = [s for s in services.values() if s["spec"].get("type") != "ExternalName" and selector_matches({"matchLabels": s["spec"].get("selector") or {}}, labels)]
        if problems.check(selecting, where, "no Service selects its Pods"):
            metrics_ports = [p for s in selecting for p in s["spec"]["ports"] if p.get("name") == "metrics"]
            if problems.check(metrics_ports, where, "its Service has no port named metrics"):
                target = metrics_ports[0]["targetPort"]
                target = ports_by_name.get(target, target)
                problems.check(str(target) == str(scrape_port), where, "the Service's metrics port is not the scraped port")

        if dep_name == "gateway":
            drain_ms = None
            for cm in config_maps.values():
                if DRAIN_KEY in (cm.get("data") or {}):
                    drain_ms = int(cm["data"][DRAIN_KEY])
            drain_ms = 10_000 if drain_ms is None else drain_ms
            pre_stop = max((sleep_seconds(c) for c in containers), default=0)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            problems.check(pre_stop > 0, where, "no preStop sleep: the Pod would get SIGTERM while still receiving new connections")
            needed = pre_stop + drain_ms / 1000 + CLOSE_MARGIN_SECS
            problems.check(grace >= needed, where, f"terminationGracePeriodSeconds {grace} is less than preStop {pre_stop} s + drain {drain_ms / 1000:g} s + {CLOSE_MARGIN_SECS} s")

    for target in AUTOSCALED:
        hpa = hpas.get(target)
        if problems.check(hpa, name, f"no HorizontalPodAutoscaler {target}"):
            where = f"{name}: HorizontalPodAutoscaler {target}"
            problems.check(hpa["apiVersion"] == "autoscaling/v2", where, "not autoscaling/v2")
            ref = hpa["spec"]["scaleTargetRef"]
            problems.check(ref["kind"] == "Deployment" and ref["name"] in deployments, where, f"scales {ref['kind']} {ref['name']}, which does not exist")
            low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
            problems.check(1 <= low <= high, where, f"bounds {low}..{high} are not a range")
            if target == "gateway":
                problems.check(low >= 2, where, "fewer than 2 gateways: a drain would disconnect everyone")

    # Redis in the cluster (components/redis), if any; otherwise `redis` must be an alias for one elsewhere.
    statefulsets = by_kind.get("StatefulSet", {})
    workloads = dict(pod_labels)
    if REDIS_STATEFULSET in statefulsets:
        workloads["redis"] = check_redis(name, statefulsets[REDIS_STATEFULSET], services, problems)
    elif "redis" in services:
        problems.check(services["redis"]["spec"].get("type") == "ExternalName", name, f"the Service redis is not an ExternalName, yet there is no StatefulSet {REDIS_STATEFULSET} behind it")

    for target in WITH_PDB:
        matching = [p for p in pdbs.values() if target in pod_labels and selector_matches(p["spec"].get("selector"), pod_labels[target])]
        problems.check(matching, name, f"no PodDisruptionBudget selects the Pods of {target}")

    # Ingress: / and /ws (and /client, the web client's files) to the gateway, long timeouts, no
    # stickiness.
    ingresses = list(by_kind.get("Ingress", {}).values())
    files_routed = False
    if problems.check(ingresses, name, "no Ingress"):
        for ingress in ingresses:
            where = f"{name}: Ingress {ingress['metadata']['name']}"
            annotations = ingress["metadata"].get("annotations") or {}
            sticky = [k for k in annotations if "affinity" in k or "session-cookie" in k or "upstream-hash-by" in k]
            problems.check(not sticky, where, f"sticky sessions configured: {sticky}")
            routed = {}
            for rule in ingress["spec"].get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    routed[path["path"]] = path["backend"]["service"]
            if "/files" in routed:
                # Attachments: streamed to chat-service's file port, which sets the limits.
                backend = routed["/files"]
                problems.check(backend["name"] == "chat-service" and backend["port"].get("name") == "files", where, "/files does not go to chat-service's files port")
                problems.check(any(p.get("name") == "files" for p in services["chat-service"]["spec"]["ports"]), where, "the chat-service Service has no files port")
                for key, expected in (("proxy-request-buffering", "off"), ("proxy-body-size", "0")):
                    problems.check(annotations.get(f"nginx.ingress.kubernetes.io/{key}") == expected, where, f"{key} is not {expected!r}: uploads must stream to chat-service")
                files_routed = True
                continue
            for key in ("proxy-read-timeout", "proxy-send-timeout"):
                value = annotations.get(f"nginx.ingress.kubernetes.io/{key}")
                problems.check(value is not None and int(value) >= 3600, where, f"{key} is not at least 3600 s")
            for path in ("/", "/ws", "/client"):
                backend = routed.get(path)
                if problems.check(backend and backend["name"] == "gateway", where, f"{path} does not go to the gateway Service"):
                    port = backend["port"].get("name") or backend["port"].get("number")
                    service_ports = services["gateway"]["spec"]["ports"]
                    problems.check(any(port in (p.get("name"), p.get("port")) for p in service_ports), where, f"{path} names port {port!r}, which the gateway Service lacks")

    problems.check(files_routed, name, "no Ingress routes /files to chat-service")

    # NetworkPolicies, evaluated for each component's Pods (an in-cluster Redis's too).
    deny_all = [
        p for p in policies
        if not p["spec"].get("ingress") and not p["spec"].get("egress")
        and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
        and all(selector_matches(p["spec"]["podSelector"], labels) for labels in workloads.values())
    ]
    problems.check(deny_all, name, "no default-deny NetworkPolicy covers every component")
    for component, labels in workloads.items():
        where = f"{name}: NetworkPolicies for {component}"
        selecting = [p for p in policies if selector_matches(p["spec"]["podSelector"], labels)]
        egress: set[tuple[str, int]] = set()
        any_port = False
        for policy in selecting:
            for rule in policy["spec"].get("egress") or []:
                opened = port_set(rule)
                if opened is None:
                    any_port = True
                else:
                    egress |= opened
        problems.check(not any_port, where, "an egress rule opens every port")
        missing = EGRESS_NEEDED.get(component, set()) - egress
        problems.check(not missing, where, f"cannot reach {sorted(missing)}")
        extra = egress - EGRESS_ALLOWED.get(component, set())
        problems.check(not extra, where, f"may reach more than it needs: {sorted(extra)}")
        # Peers are other namespaces (by name; "?" for anything else: an ipBlock, every source) or
        # Pods of the same namespace (a podSelector alone), evaluated against the components' labels.
        sources = []
        pod_sources = []
        for policy in selecting:
            for rule in policy["spec"].get("ingress") or []:
                for peer in rule.get("from") or [{}]:
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        pod_sources.append((peer["podSelector"], port_set(rule)))
                        continue
                    namespace = ((peer.get("namespaceSelector") or {}).get("matchLabels") or {}).get("kubernetes.io/metadata.name", "?")
                    sources.append((namespace, port_set(rule)))
        for namespace, opened in sources:
            problems.check(opened is not None, where, f"ingress from {namespace} on every port")
        if component == "gateway":
            problems.check(any(ns == "ingress-nginx" and opened and ("TCP", 8000) in opened for ns, opened in sources), where, "the ingress controller cannot reach the gateway")
        if component == "chat-service":
            problems.check(any(ns == "ingress-nginx" and opened and ("TCP", 8090) in opened for ns, opened in sources), where, "the ingress controller cannot reach chat-service's file port")
        allowed_sources = INGRESS_FROM_NAMESPACES.get(component, {"monitoring"})
        strangers = {ns for ns, _ in sources} - allowed_sources
        problems.check(not strangers, where, f"accepts connections from {sorted(strangers)}")
        port, clients = INGRESS_FROM_PODS.get(component, (None, set()))
        for selector, opened in pod_sources:
            admitted = sorted(c for c, other in workloads.items() if selector_matches(selector, other))
            problems.check(opened is not None, where, f"ingress from the Pods of {admitted} on every port")
            problems.check(not any(selector_matches(selector, stranger) for stranger in STRANGERS), where, "accepts connections from Pods that are none of Switchyard's components")
            extra = set(admitted) - clients
            problems.check(not extra, where, f"accepts connections from {sorted(extra)}")
            if port is not None:
                problems.check(opened is None or opened <= {port}, where, f"opens {sorted(opened or set())} to Pods, more than {port}")
        for client in sorted(clients & set(workloads)):
            reached = any((opened is None or port in opened) and selector_matches(selector, workloads[client]) for selector, opened in pod_sources)
            problems.check(reached, where, f"{client} cannot reach it on {port}")

    # An overlay that creates its namespace puts everything in it.
    if "Namespace" in by_kind:
        for doc in docs:
            if doc["kind"] != "Namespace":
                problems.check(doc["metadata"].get("namespace"), f"{name}: {doc['kind']} {doc['metadata']['name']}", "has no namespace")


# ---------------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------------


def depends_on(service: dict) -> set[str]:
    value = service.get("depends_on") or []
    return set(value) if isinstance(value, (list, dict)) else set()


def check_compose(path: Path, schema_path: Path | None, problems: Problems) -> None:
    where = str(path)
    with path.open() as f:
        compose = yaml.safe_load(f)
    if schema_path is not None:
        import json

        import jsonschema

        schema = json.loads(schema_path.read_text())
        # The schema names draft 2019-09 with a spelling jsonschema does not look up; say it outright.
        validator = jsonschema.Draft201909Validator(schema)
        for error in sorted(validator.iter_errors(compose), key=lambda e: list(e.path)):
            location = "/".join(str(p) for p in error.path) or "(top level)"
            problems.add(where, f"Compose schema: {location}: {error.message}")

    services = compose.get("services") or {}
    base = path.parent
    for required in ("redis", "mongo", "maildev", "auth-service", "chat-service", "mailer", "nginx"):
        problems.check(required in services, where, f"no service {required}")
    gateways = sorted(s for s in services if s.startswith("gateway"))
    problems.check(len(gateways) >= 2, where, f"expected two gateways, found {gateways}")
    problems.check(str((services.get("mongo") or {}).get("image", "")).startswith("mongo:7"), where, "mongo is not the official mongo:7 image")
    problems.check(str((services.get("maildev") or {}).get("image", "")).startswith("maildev/maildev"), where, "maildev is not the maildev/maildev image")
    auth = services.get("auth-service") or {}
    problems.check(((auth.get("deploy") or {}).get("replicas") or auth.get("scale")) == 2, where, "auth-service does not run two replicas")

    declared_volumes = set(compose.get("volumes") or {})
    gateway_ids = []
    for name, service in services.items():
        swhere = f"{where}: service {name}"
        problems.check("image" in service or "build" in service, swhere, "has neither image nor build")
        for dependency in depends_on(service):
            problems.check(dependency in services, swhere, f"depends on unknown service {dependency}")
        build = service.get("build")
        if isinstance(build, dict):
            context = (base / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            problems.check(dockerfile.is_file(), swhere, f"Dockerfile {dockerfile} does not exist")
            target = (build.get("args") or {}).get("SERVICE")
            problems.check(target in SERVICES, swhere, f"builds SERVICE={target!r}, not one of {SERVICES}")
            environment = service.get("environment") or {}
            problems.check(isinstance(environment, dict) and all(k.startswith("SWITCHYARD__") for k in environment), swhere, "settings must be SWITCHYARD__ variables")
            problems.check("SWITCHYARD__REDIS__URL" in environment, swhere, "no SWITCHYARD__REDIS__URL")
            if target == "gateway":
                problems.check(str(environment.get("SWITCHYARD__GATEWAY__LISTEN", "")).startswith("0.0.0.0:"), swhere, "the gateway must listen on 0.0.0.0 in a container")
                gateway_ids.append(environment.get("SWITCHYARD__GATEWAY__ID"))
                problems.check("mongo" not in depends_on(service), swhere, "the gateway does not use MongoDB and must not wait for it")
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                problems.check((base / source).exists(), swhere, f"mounts {source}, which does not exist")
            elif source:
                problems.check(source in declared_volumes, swhere, f"volume {source} is not declared")
    problems.check(len(set(gateway_ids)) == len(gateway_ids), where, f"gateway ids are not unique: {gateway_ids}")
    nginx = services.get("nginx") or {}
    missing = set(gateways) - depends_on(nginx)
    problems.check(not missing, where, f"nginx does not depend on {sorted(missing)}")
    command = " ".join(nginx.get("command") or []) if isinstance(nginx.get("command"), list) else str(nginx.get("command", ""))
    for gateway in gateways:
        problems.check(f"{gateway}:8000" in command, where, f"nginx's rendered configuration leaves out {gateway}")
    problems.check("--files chat-service:8090" in command, where, "nginx's rendered configuration does not route /files to chat-service")
    problems.check("chat-service" in depends_on(nginx), where, "nginx does not depend on chat-service")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s", action="append", default=[], metavar="NAME=FILE[:SECRET,...]", help="rendered manifests; the Secrets after ':' are created out of band")
    parser.add_argument("--compose", type=Path)
    parser.add_argument("--compose-schema", type=Path)
    args = parser.parse_args()

    problems = Problems()
    for spec in args.k8s:
        name, _, rest = spec.partition("=")
        file, _, external = rest.partition(":")
        with open(file) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        check_k8s(name, docs, {s for s in external.split(",") if s}, problems)
        if not problems.items:
            print(f"validate: {name}: {len(docs)} resources meet Switchyard's requirements")
    if args.compose:
        before = len(problems.items)
        check_compose(args.compose, args.compose_schema, problems)
        if len(problems.items) == before:
            schema = " and the Compose schema" if args.compose_schema else ""
            print(f"validate: {args.compose}: meets Switchyard's requirements{schema}")
    for item in problems.items:
        print(f"validate: error: {item}", file=sys.stderr)
    return 1 if problems.items else 0


if __name__ == "__main__":
    sys.exit(main())
