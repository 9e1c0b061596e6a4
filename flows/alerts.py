"""``segflow alerts``: Prefect automations that tell someone when a segflow deployment's run fails, crashes or is
late, and that retry a crashed run once.

Everything lives on the Prefect server, as code: one webhook notification block and two automations, created or
updated under fixed names, so that running the command again changes them in place instead of adding copies.

* ``segflow: notify on failed, crashed or late runs``: a ``prefect.flow-run.Failed``, ``.Crashed`` or ``.Late``
  event of a run of a deployment of the ``segflow`` flow sends one notification (subject, body, link to the run
  in the UI) to the webhook, as JSON ``{"subject": ..., "body": ...}``.
* ``segflow: retry a crashed run once``: a run that crashed on its first attempt (the event's
  ``prefect.run-count`` is 1) is set back to Scheduled (``AwaitingRetry``) so that its worker or ``segflow serve``
  runs it again; it resumes from the cached stages. A second crash has run count 2 and is left alone.
  Prefect 3.8 never retries a Crashed run by itself: a flow's ``retries`` cover Failed runs only (the server's
  RetryFailedFlows rule acts on Running -> Failed), and a crash means the process that would retry is gone.
"""

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from segmentation._errors import ConfigError

if TYPE_CHECKING:
    from prefect.events.schemas.events import ResourceSpecification

__all__ = ["BLOCK_NAME", "NOTIFY", "RETRY_CRASHED", "AlertsPlan", "alert_automations", "install_alerts"]

BLOCK_NAME = "segflow-alerts"
NOTIFY = "segflow: notify on failed, crashed or late runs"
RETRY_CRASHED = "segflow: retry a crashed run once"
FLOW_NAME = "segflow"
EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.Late")

SUBJECT = "segflow: run {{ flow_run.name }} of segflow/{{ deployment.name }} is {{ flow_run.state.name }}"
BODY = """Flow run {{ flow_run.name }} of deployment segflow/{{ deployment.name }} is {{ flow_run.state.name }} \
(since {{ flow_run.state.timestamp }}).
{% if flow_run.state.message %}Message: {{ flow_run.state.message }}
{% endif %}{% if flow_run.state.name == 'Failed' %}A failed run is not retried: read its logs, fix the input or the \
configuration, and retry it (prefect flow-run retry {{ flow_run.id }}). Nothing was published; earlier runs and \
latest are unchanged.
{% elif flow_run.state.name == 'Crashed' %}Its process died (killed, out of memory, machine lost). A run that crashes \
on its first attempt is scheduled again once, automatically, and resumes from its cached stages.
{% else %}No worker or segflow serve started it on time: check that one is running for this deployment.
{% endif %}Flow run id: {{ flow_run.id }}{% set url = flow_run|ui_url %}{% if url %}
Prefect UI: {{ url }}{% endif %}"""


@dataclass(frozen=True)
class AlertsPlan:
    """What ``segflow alerts`` did (or, with ``dry_run``, would do): one line per block and automation."""

    lines: list[str]
    automation_ids: dict[str, UUID | None]


def _check_webhook(url: str) -> None:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url or ""):
        raise ConfigError(f"segflow alerts --webhook {url!r}: expected an http:// or https:// URL with a host and "
                          "no spaces, e.g. https://hooks.example.com/segflow")  # fmt: skip


def _segflow_runs(deployments: list[str] | None) -> list["ResourceSpecification | dict[str, str | list[str]]"]:
    """match_related: the run belongs to the segflow flow and to a deployment (one of ``deployments`` if given)."""
    deployment: dict[str, str | list[str]] = {"prefect.resource.role": "deployment"}
    if deployments:
        deployment["prefect.resource.name"] = list(deployments)
    return [{"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME}, deployment]


def alert_automations(block_document_id: UUID, *, deployments: list[str] | None = None,
                      retry_crashed: bool = True) -> list[Any]:  # fmt: skip
    """The automations, as ``prefect.automations.AutomationCore`` objects (not yet on a server)."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    related = _segflow_runs(deployments)
    scope = f"deployments {', '.join(deployments)}" if deployments else "every deployment"
    out = [AutomationCore(
        name=NOTIFY,
        description=f"Created by `segflow alerts`. A Failed, Crashed or Late run of the segflow flow ({scope}) sends "
                    f"one notification to the webhook block '{BLOCK_NAME}'.",
        trigger=EventTrigger(expect=set(EVENTS), match={"prefect.resource.id": "prefect.flow-run.*"},
                             match_related=related, for_each={"prefect.resource.id"}, posture=Posture.Reactive,
                             threshold=1),
        actions=[SendNotification(block_document_id=block_document_id, subject=SUBJECT, body=BODY)],
    )]  # fmt: skip
    if retry_crashed:
        out.append(AutomationCore(
            name=RETRY_CRASHED,
            description=f"Created by `segflow alerts`. A run of the segflow flow ({scope}) that crashed on its first "
                        "attempt is scheduled again once (AwaitingRetry); it resumes from its cached stages.",
            trigger=EventTrigger(expect={"prefect.flow-run.Crashed"},
                                 match={"prefect.resource.id": "prefect.flow-run.*", "prefect.run-count": "1"},
                                 match_related=related, for_each={"prefect.resource.id"}, posture=Posture.Reactive,
                                 threshold=1),
            actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", force=True,
                                        message="segflow: retried once automatically after a crash")],
        ))  # fmt: skip
    return out


def install_alerts(webhook: str, *, deployments: list[str] | None = None, retry_crashed: bool = True,
                   dry_run: bool = False) -> AlertsPlan:  # fmt: skip
    """Create or update the webhook block and the automations on the Prefect server at ``PREFECT_API_URL``.

    Idempotent: the block and each automation are found by name and updated in place; duplicates of a name
    (made by hand) are removed. ``retry_crashed=False`` removes the retry automation if it exists.

    Raises:
        ConfigError: the webhook is not an http(s) URL, or no Prefect server is configured.
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    _check_webhook(webhook)
    if not PREFECT_API_URL.value():
        raise ConfigError("segflow alerts needs a running Prefect server, and PREFECT_API_URL is not set. Start one "
                          "with `prefect server start --host 127.0.0.1` and `export PREFECT_API_URL="
                          "http://127.0.0.1:4200/api` (see docs/OPERATIONS.md)")  # fmt: skip
    verb = "would " if dry_run else ""
    lines: list[str] = []
    block = CustomWebhookNotificationBlock(name=BLOCK_NAME, url=webhook,
                                           json_data={"subject": "{{subject}}", "body": "{{body}}"})  # fmt: skip
    with get_client(sync_client=True) as client:
        if dry_run:
            block_id = UUID(int=0)
        else:
            # Block.save is @async_dispatch'ed, typed "UUID | Coroutine"; called here from sync code it returns the UUID
            block_id = cast(UUID, block.save(BLOCK_NAME, overwrite=True))
        lines.append(f"{verb}save webhook block 'custom-webhook/{BLOCK_NAME}' -> {webhook}")
        wanted = {a.name: a for a in alert_automations(block_id, deployments=deployments, retry_crashed=retry_crashed)}
        ids: dict[str, UUID | None] = {}
        for name in (NOTIFY, RETRY_CRASHED):
            existing = client.read_automations_by_name(name)
            for extra in existing[1:] if name in wanted else existing:
                if not dry_run:
                    client.delete_automation(extra.id)
                lines.append(f"{verb}delete automation '{name}' ({extra.id})")
            if name not in wanted:
                continue
            if existing:
                if not dry_run:
                    client.update_automation(existing[0].id, wanted[name])
                ids[name] = existing[0].id
                lines.append(f"{verb}update automation '{name}' ({existing[0].id})")
            else:
                ids[name] = None if dry_run else client.create_automation(wanted[name])
                lines.append(f"{verb}create automation '{name}'" + (f" ({ids[name]})" if ids[name] else ""))
    return AlertsPlan(lines, ids)
