"""Alerts when something changed between runs: a webhook, a mail, or both.

`notify()` is the one entry point. It sends nothing when nothing changed, sends
to every configured channel at once, and never raises because a channel
failed: a broken alert channel is reported to the user, and must neither fail
the run nor lose its reports. Only programming errors propagate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from checker.http.client import ClientConfig
from checker.notify.errors import NotifyError
from checker.notify.message import summary_json, summary_text
from checker.notify.smtp import SMTPConfig, send_mail
from checker.notify.webhook import post_webhook
from checker.store.model import Change

__all__ = ["NotifyError", "SMTPConfig", "notify", "post_webhook", "send_mail"]


async def notify(
    changes: Sequence[Change],
    run: Mapping[str, Any],
    *,
    webhook: str | None,
    webhook_client: ClientConfig | None,
    smtp: SMTPConfig | None,
) -> list[str]:
    """Alert every configured channel about `changes`; one line per channel.

    Lines read "webhook: sent (HTTP 200)", "mail: sent to 2 recipients" or
    "<channel>: failed: <why>", webhook first.
    """
    if not changes:
        return []
    if webhook is not None and webhook_client is None:
        raise ValueError("a webhook needs webhook_client")
    async with asyncio.TaskGroup() as group:
        tasks = []
        if webhook is not None and webhook_client is not None:
            body = summary_json(run, changes)
            tasks.append(group.create_task(_webhook(webhook, body, webhook_client)))
        if smtp is not None:
            subject, text = summary_text(run, changes)
            tasks.append(group.create_task(_mail(smtp, subject, text)))
    return [task.result() for task in tasks]


async def _webhook(url: str, body: bytes, client: ClientConfig) -> str:
    try:
        status = await post_webhook(url, body, client)
    except NotifyError as exc:
        return f"webhook: failed: {exc}"
    return f"webhook: sent (HTTP {status})"


async def _mail(config: SMTPConfig, subject: str, body: str) -> str:
    try:
        await send_mail(config, subject, body)
    except NotifyError as exc:
        return f"mail: failed: {exc}"
    n = len(config.recipients)
    return f"mail: sent to {n} recipient{'' if n == 1 else 's'}"
