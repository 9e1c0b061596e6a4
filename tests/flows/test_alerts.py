"""``segflow alerts`` without a server: what the automations match, and its refusals of bad input.

The real-server test (a webhook receiver gets one notification for a failing run; a crashed run is rescheduled
once) is tests/server/test_operations.py.
"""

from uuid import uuid4

import pytest

from flows.alerts import EVENTS, NOTIFY, RETRY_CRASHED, alert_automations
from flows.cli import main


def test_automations_match_runs_of_segflow_deployments_and_retry_only_a_first_crash():
    block = uuid4()
    notify, retry = alert_automations(block)
    assert notify.name == NOTIFY and retry.name == RETRY_CRASHED
    assert notify.trigger.expect == set(EVENTS) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed",
                                                    "prefect.flow-run.Late"}  # fmt: skip
    related = [spec.root for spec in notify.trigger.match_related]
    assert {"prefect.resource.role": "flow", "prefect.resource.name": "segflow"} in related
    assert {"prefect.resource.role": "deployment"} in related
    assert notify.actions[0].type == "send-notification" and notify.actions[0].block_document_id == block
    assert "flow_run|ui_url" in notify.actions[0].body and "{{ flow_run.id }}" in notify.actions[0].body
    assert retry.trigger.expect == {"prefect.flow-run.Crashed"}
    assert retry.trigger.match.root["prefect.run-count"] == "1"  # a second crash (run count 2) is left alone
    action = retry.actions[0]
    assert (
        action.type == "change-flow-run-state" and action.state.value == "SCHEDULED" and action.name == "AwaitingRetry"
    )
    only = alert_automations(block, deployments=["segflow-nightly"], retry_crashed=False)
    assert len(only) == 1
    assert {"prefect.resource.role": "deployment", "prefect.resource.name": ["segflow-nightly"]} in [
        spec.root for spec in only[0].trigger.match_related]  # fmt: skip


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "hooks.example.com/segflow", "http://", "http://a b"])
def test_a_webhook_that_is_not_an_http_url_is_refused(url, capsys, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached
    assert main(["alerts", "--webhook", url]) == 2
    err = capsys.readouterr().err
    assert f"segflow alerts --webhook {url!r}: expected an http:// or https:// URL" in err


def test_alerts_without_a_server_is_refused(capsys, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["alerts", "--webhook", "https://hooks.example.com/segflow", "--dry-run"]) == 2
    assert "segflow alerts needs a running Prefect server, and PREFECT_API_URL is not set" in capsys.readouterr().err
