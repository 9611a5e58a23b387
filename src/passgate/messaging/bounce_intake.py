"""What happens to a bounce, whichever way it came (the SMTP listener, POST /providers/bounces).

A hard bounce is a delivery report like a provider's (`Dispatcher.delivery_report`, the path the SMS
gateway's "failed" takes): in one transaction the message becomes BOUNCED, its session INVALID (reason
BOUNCED) with its timeline entries, and the session's status webhook is queued in the outbox. A soft bounce
is told to the message's owner (`Dispatcher.delivery_delayed`: a timeline entry), and changes no status.
Each distinct bounce is recorded once (`message_bounces`), so a repeat changes nothing.

What cannot be acted on (no bounce address of ours, a forged token, a message that does not exist, a
success notice or an auto-reply) is counted (`passgate_bounces_total`) and otherwise ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from passgate.clock import Clock
from passgate.db import transaction
from passgate.messaging import queries
from passgate.messaging.bounces import Bounce, BounceAddresses, parse_bounce
from passgate.messaging.dispatcher import Dispatcher
from passgate.messaging.states import DeliveryStatus, MessageStatus
from passgate.observability import Metrics

log = logging.getLogger("passgate.bounces")

Outcome = Literal["bounced", "delayed", "duplicate", "early", "forged", "unknown", "not-a-bounce"]
Source = Literal["smtp", "http"]


@dataclass
class BounceIntake:
    sessions: sessionmaker[Session]
    dispatcher: Dispatcher
    addresses: BounceAddresses
    metrics: Metrics
    clock: Clock

    def accepts(self, address: str) -> bool:
        """Whether the SMTP listener takes mail for `address` (a bounce address with a token of ours). A
        forged token is counted."""
        if self.addresses.message_of(address) is not None:
            return True
        if self.addresses.looks_like_ours(address):
            self.metrics.bounces.labels("smtp", "forged").inc()
        return False

    def take(self, raw: bytes, recipients: Sequence[str], source: Source) -> Outcome:
        """Reads a bounce and acts on it (see the module docstring). `recipients`: the SMTP envelope's."""
        bounce = parse_bounce(raw, recipients)
        outcome = self._take(bounce, source)
        self.metrics.bounces.labels(source, outcome).inc()
        log.info(
            "bounce received",
            extra={"source": source, "outcome": outcome, "bounce": bounce.kind, "status": bounce.status},
        )
        return outcome

    def _take(self, bounce: Bounce, source: Source) -> Outcome:
        message_id: str | None = None
        forged = False
        for address in bounce.addresses:
            message_id = self.addresses.message_of(address)
            if message_id is not None:
                break
            forged = forged or self.addresses.looks_like_ours(address)
        if message_id is None:
            return "forged" if forged else "unknown"
        if bounce.kind is None:
            return "not-a-bounce"
        with transaction(self.sessions) as session:
            message = queries.report_target(session, "id", message_id)
            if message is None or message.channel != "EMAIL":
                return "unknown"
            if message.status in (MessageStatus.QUEUED, MessageStatus.SENDING):
                # Not yet recorded as sent (a very fast bounce, or a retry of the send): a report now
                # would be overwritten by the send's record. The sender of the bounce tries again.
                return "early"
            fresh = queries.add_bounce(
                session,
                {
                    "message_id": message.id,
                    "bounce_key": bounce.key,
                    "kind": bounce.kind,
                    "status": bounce.status,
                    "source": source,
                    "received_at": self.clock.now(),
                },
            )
            if not fresh:
                return "duplicate"
            detail = bounce.detail()
            if bounce.kind == "soft":
                self.dispatcher.delivery_delayed(session, message, f"{source}-bounce", detail)
                return "delayed"
            changed = self.dispatcher.delivery_report(
                session, message, DeliveryStatus.BOUNCED, f"{source}-bounce", detail
            )
            return "bounced" if changed else "duplicate"
