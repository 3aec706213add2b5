"""The Kubernetes manifests of deploy/kubernetes/ as `kubectl kustomize` renders them, and the
Prometheus Operator's CRD schemas (crds/, see crds/SOURCE.md) to check its resources against."""

from __future__ import annotations

import copy
import functools
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent.name for p in (KUBE / "overlays").glob("*/kustomization.yaml"))
CRDS = Path(__file__).resolve().parent / "crds"
OPERATOR_GROUP = "monitoring.coreos.com"

Doc = dict[str, Any]


@functools.cache
def render(overlay: str) -> tuple[Doc, ...]:
    binary = require_tool("kubectl")
    out = subprocess.run([binary, "kustomize", str(KUBE / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"kubectl kustomize {overlay}: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def closed(schema: Any) -> Any:
    """`schema` with unknown properties refused wherever it lists properties and allows no
    others: the API server would prune them silently (a misspelt `relabellings` would vanish)."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> the CRD's openAPIV3Schema, closed."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = closed(schema)
    return schemas


def crd_errors(doc: Doc) -> list[str]:
    schema = crd_schemas().get((doc["apiVersion"], doc["kind"]))
    assert schema is not None, f"no CRD schema kept for {doc['apiVersion']} {doc['kind']}"
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


def pod_spec(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def all_containers(deployment: Doc) -> list[Doc]:
    spec = pod_spec(deployment)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(deployment: Doc, name: str) -> Doc:
    found = [c for c in all_containers(deployment) if c["name"] == name]
    assert len(found) == 1, f"container {name}: {len(found)} found"
    return found[0]


def arg(c: Doc, flag: str) -> str:
    values = [a.split("=", 1)[1] for a in c.get("args", []) if a.startswith(f"{flag}=")]
    assert len(values) == 1, f"{c['name']}: {flag} given {len(values)} times"
    return values[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
