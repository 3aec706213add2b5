from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from exporter.otlp.resource import producer


def test_command_lines_and_secret_named_attributes_stay_out_of_target_info() -> None:
    def kv(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    resource = Resource(attributes=[
        kv("service.name", "api"), kv("service.instance.id", "w1"), kv("host.name", "h"),
        kv("process.command_line", "app --redis-url redis://:pw-in-argv@r:6379"),
        kv("process.command_args", "--redis-url redis://:pw-in-argv@r:6379"),
        kv("db.password", "pw-in-attr"), kv("deploy.api_key", "k-in-attr"),
    ])
    labels = dict(producer(resource).target_labels)
    assert labels["host_name"] == "h" and labels["service_name"] == "api"
    text = repr(labels)
    assert "pw-in-argv" not in text and "pw-in-attr" not in text and "k-in-attr" not in text
