"""Who sent a batch: the producer's identity labels and its `target_info` labels.

Deviation from the compatibility specification, by the project's rule that no series label may
clash with Prometheus's target labels: instead of `job` and `instance`, every translated series
carries `service_name` (`<service.namespace>/<service.name>` when a namespace is set) and
`service_instance_id`. A producer without `service.instance.id` gets one derived from the
identifying attributes it does have (host, container, pod, process id), or failing those from a
hash of all its resource attributes, so that workers of one app keep distinct series.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from exporter.exposition import Labels
from exporter.otlp.naming import (
    MAX_LABEL_NAME_LENGTH,
    MAX_LABEL_VALUE_LENGTH,
    attribute_labels,
    short_keys,
    value_text,
)

SERVICE_NAME = "service_name"
SERVICE_INSTANCE_ID = "service_instance_id"
UNKNOWN_SERVICE = "unknown_service"
_IDENTIFYING = ("host.name", "host.id", "container.id", "k8s.pod.uid", "process.pid")
MAX_RESOURCE_ATTRIBUTES = 64
# Resource attributes kept out of target_info: command lines carry whatever the app was started
# with (a `--redis-url redis://:pw@...`), and names that say secret mean it.
_WITHHELD_PREFIXES = ("process.command",)
_WITHHELD_WORDS = ("password", "passwd", "secret", "token", "credential", "api_key", "apikey")


def _withheld(key: str) -> bool:
    lowered = key.lower()
    return lowered.startswith(_WITHHELD_PREFIXES) or any(w in lowered for w in _WITHHELD_WORDS)


@dataclass(frozen=True, slots=True)
class Producer:
    service_name: str
    instance_id: str
    target_labels: Labels
    dropped_attributes: int = 0

    @property
    def labels(self) -> dict[str, str]:
        return {SERVICE_NAME: self.service_name, SERVICE_INSTANCE_ID: self.instance_id}


def _derive_instance(values: dict[str, str]) -> str:
    parts = [values[key] for key in _IDENTIFYING if values.get(key)]
    if parts:
        return ":".join(parts)
    text = "\n".join(f"{k}={v}" for k, v in sorted(values.items()))
    return "sha256-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _build(resource: Resource, max_name: int, max_attributes: int) -> Producer:
    attributes, dropped = short_keys(resource.attributes, max_name)
    values = {kv.key: value_text(kv.value)[:MAX_LABEL_VALUE_LENGTH] for kv in attributes}
    name = values.get("service.name") or UNKNOWN_SERVICE
    namespace = values.get("service.namespace")
    if namespace:
        name = f"{namespace}/{name}"
    instance = values.get("service.instance.id") or _derive_instance(values)
    name, instance = name[:MAX_LABEL_VALUE_LENGTH], instance[:MAX_LABEL_VALUE_LENGTH]
    shown = [kv for kv in attributes if not _withheld(kv.key)]
    if len(shown) > max_attributes:  # keep the first ones, as the producer ordered them
        dropped += len(shown) - max_attributes
        shown = shown[:max_attributes]
    target = attribute_labels(shown)
    target[SERVICE_NAME] = name
    target[SERVICE_INSTANCE_ID] = instance
    return Producer(name, instance, tuple(sorted(target.items())), dropped)


def producer(
    resource: Resource,
    max_name: int = MAX_LABEL_NAME_LENGTH,
    max_attributes: int = MAX_RESOURCE_ATTRIBUTES,
) -> Producer:
    """Identity and target_info labels of a resource: attributes with a key over `max_name`
    characters are dropped, `target_info` shows at most `max_attributes` of the others (each
    value cut at MAX_LABEL_VALUE_LENGTH); `dropped_attributes` says how many were left out."""
    return _build(resource, max_name, max_attributes)
