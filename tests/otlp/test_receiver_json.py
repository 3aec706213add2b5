"""OTLP/JSON bodies the specification calls invalid, pushed to a real sidecar process: each gets
400 with a google.rpc.Status, is counted among the rejections, and logs nothing per request."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.sidecar import run_sidecar

pytestmark = pytest.mark.e2e

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
JS = {"content-type": "application/json"}


def _traces(**span: object) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


INVALID = [
    ("/v1/metrics", b'{"resourceMetrics": 5}'),
    ("/v1/metrics", b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": ["c"]}]}]}'),
    ("/v1/traces", _traces(traceId="not hex at all, not hex at all!!", spanId=SPAN_ID)),
    ("/v1/traces", _traces(traceId="abcd", spanId=SPAN_ID)),
    ("/v1/traces", _traces(traceId=TRACE_ID, spanId=TRACE_ID)),
    ("/v1/traces", _traces(traceId=TRACE_ID, spanId=SPAN_ID, status="error")),
    ("/v1/traces", _traces(traceId=TRACE_ID, spanId=SPAN_ID, kind=1.5)),
]


def test_invalid_otlp_json_gets_400_is_counted_and_not_logged() -> None:
    with run_sidecar(["--redis.addr="]) as proc:
        with httpx.Client(base_url=proc.otlp_url, timeout=10) as client:
            for path, body in INVALID:
                response = client.post(path, content=body, headers=JS)
                assert response.status_code == 400, (path, body, response.text)
                status = response.json()
                assert status["code"] == 3 and status["message"]
            valid = _traces(traceId=TRACE_ID, spanId=SPAN_ID, name="SELECT 1",
                            unknownField={"ignored": True})
            assert client.post("/v1/traces", content=valid, headers=JS).status_code == 200
        text = httpx.get(f"{proc.web_url}/metrics", timeout=10).text
        assert ('tradesense_exporter_otlp_requests_rejected_total'
                '{signal="metrics",reason="malformed"} 2\n') in text
        assert ('tradesense_exporter_otlp_requests_rejected_total'
                '{signal="traces",reason="malformed"} 5\n') in text
        assert proc.stop() == 0
        logs = proc.logs()
    assert "Traceback" not in logs and "exc=" not in logs
    assert [line for line in logs.splitlines() if "level=info" not in line] == []
