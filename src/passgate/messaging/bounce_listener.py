"""`passgate bounces`: an SMTP server (aiosmtpd) that takes bounces for the bounce addresses, and only them.

Put it behind the MX of the bounce domain (docs/operations.md, "Bounces"). A recipient that is not a bounce
address with a token of ours is refused at RCPT (550); a bounce that cannot be recorded now (the database
is unavailable, or the message is not yet recorded as sent) is deferred (451) so the sending server tries
again; everything else is accepted (250), acted on or ignored (`BounceIntake`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.controller import Controller

from passgate.messaging.bounce_intake import BounceIntake
from passgate.messaging.bounces import MAX_BOUNCE_BYTES

log = logging.getLogger("passgate.bounces")
MAX_RECIPIENTS = 10  # a bounce is addressed to one bounce address


class BounceHandler:
    """aiosmtpd's handler: RCPT checks the address, DATA hands the bounce to the intake (off the loop)."""

    def __init__(self, intake: BounceIntake) -> None:
        self.intake = intake

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if not self.intake.accepts(address):
            return "550 5.1.1 No such bounce address here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            outcome = await asyncio.to_thread(self.intake.take, raw, list(envelope.rcpt_tos), "smtp")
        except Exception:
            log.exception("bounce not recorded; the sender will try again")
            return "451 4.3.0 Cannot record the bounce now, try again later"
        if outcome == "early":
            return "451 4.3.0 The message is not yet recorded as sent, try again later"
        return "250 OK"


class BounceListener:
    """The SMTP server on its own thread and event loop (aiosmtpd's `Controller`)."""

    def __init__(self, intake: BounceIntake, host: str = "127.0.0.1", port: int = 2525) -> None:
        self.host = host
        self.port = port
        self.controller = Controller(
            BounceHandler(intake),
            hostname=host,
            port=port,
            data_size_limit=MAX_BOUNCE_BYTES,
            ident="Passgate bounces",
        )

    def start(self) -> BounceListener:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
