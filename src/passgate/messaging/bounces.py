"""Bounces: the VERP address each email is sent from, and what a bounce that comes back to it says.

**The address.** With PASSGATE_BOUNCE_DOMAIN set, the envelope sender (MAIL FROM, later the mail's
`Return-Path`) of every email is `bounces+<token>@<bounce domain>`, where the token is the outbox message's
id and a keyed hash of it (`KeyRing.keyed_hash`, purpose "bounce"), in hex: 52 characters, read in any case
(some relays change the case of local parts). Only Passgate can make a token, so nobody can report a bounce for a
message they did not receive the bounce of; after a key rotation the older keys still read the tokens they
made. `{domain}` in the setting is replaced by the domain of the mail's From address, so each sending
domain can have its own bounce domain (`bounce.{domain}`: aligned with the From domain, as DMARC's relaxed
SPF alignment wants).

**The bounce.** `parse_bounce` reads a delivery status notification (RFC 3464: `multipart/report;
report-type=delivery-status`, whose `message/delivery-status` part has one block per recipient with
`Action` and `Status`): `failed` or a 5.x.x status is a hard bounce, `delayed` or 4.x.x a soft one, and
`delivered`/`relayed`/`expanded` no bounce at all. A message that is not a DSN (older MTAs write their
bounces as plain text) is a bounce when it came to a bounce address and looks like one (a mailer-daemon
or postmaster sender, a bounce's subject, or enhanced status codes in its text); its kind is guessed from
those codes (hard when there are none). Anything else, such as an auto-reply ("out of office"), is not.
Which message it is about is taken only from the bounce addresses it carries (the envelope recipients,
then the headers relays add, then the returned original's `Return-Path`), never from the returned
`Message-ID`, which anyone who got the mail can read.

Pure: no database, no network; `parse_bounce` never raises, whatever the bytes.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import hashlib
import hmac
import quopri
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr
from functools import lru_cache
from typing import Literal

from passgate.keyring import KeyRing
from passgate.messaging.senders.base import provider_said

PURPOSE = "bounce"
DEFAULT_LOCAL_PART = "bounces"
# The message id (32 hex digits) and 20 of its keyed hash (80 bits: a forger gets one try per bounce it
# sends). Hex: case-insensitive, and `bounces+` and the token make 60 characters, within the 64 a local
# part may have (RFC 5321).
_MAC_CHARS = 20
_TOKEN = re.compile(r"[0-9a-f]{52}")
_HEX = re.compile(r"[0-9a-f]+")
# Where a relay writes the address a mail was delivered to (RFC 9228 Delivered-To, Postfix, Exim, qmail).
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Rcpt-To", "To")
# An enhanced status code (RFC 3463), not part of an IP address or a version number.
_STATUS = re.compile(r"(?<![\w.])([245])\.\d{1,3}\.\d{1,3}(?!\.?\d)")
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|abwesenheit|vacation)",
    re.IGNORECASE,
)
# What the plain-text bounces of older MTAs (Exim, qmail, Sendmail, Exchange) say in their subject.
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status notification|failure|has failed)|mail delivery fail|returned mail|"
    r"failure notice|could not be delivered|delivery (is )?delayed|warning: message .* delayed",
    re.IGNORECASE,
)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")
MAX_BOUNCE_BYTES = 1024 * 1024  # a DSN with the whole original mail attached is some 20 KB

BounceKind = Literal["hard", "soft"]


# -- the address ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BounceAddresses:
    """Makes and reads the bounce (VERP) addresses. `domain` may hold `{domain}`, the From address's domain."""

    keyring: KeyRing
    domain: str
    local_part: str = DEFAULT_LOCAL_PART

    def for_message(self, message_id: str, from_header: str) -> str | None:
        """The envelope sender of the email `message_id` sent with this From header, or None (keep the
        From address): a message id that is not a UUID, a From address without a domain."""
        id_hex = message_id.replace("-", "").lower()
        if len(id_hex) != 32 or not _HEX.fullmatch(id_hex):
            return None
        domain = self.domain
        if "{domain}" in domain:
            from_domain = _domain_of(from_header)
            if not from_domain:
                return None
            domain = domain.replace("{domain}", from_domain)
        return f"{self.local_part}+{id_hex}{self._mac(id_hex)}@{domain}"

    def message_of(self, address: str) -> str | None:
        """The message id a bounce address names, when its token is one of ours; else None."""
        local = address.strip().strip("<>").rpartition("@")[0].lower()
        prefix, plus, token = local.partition("+")
        if not plus or prefix != self.local_part.lower() or not _TOKEN.fullmatch(token):
            return None
        id_hex, given = token[:32], token[32:]
        for key_hash in self.keyring.all_hashes(PURPOSE, id_hex):
            if hmac.compare_digest(key_hash[:_MAC_CHARS], given):
                return f"{id_hex[:8]}-{id_hex[8:12]}-{id_hex[12:16]}-{id_hex[16:20]}-{id_hex[20:]}"
        return None

    def _mac(self, id_hex: str) -> str:
        return self.keyring.keyed_hash(PURPOSE, id_hex)[:_MAC_CHARS]

    def looks_like_ours(self, address: str) -> bool:
        """Whether an address has the form of a bounce address (its token not checked)."""
        local = address.strip().strip("<>").rpartition("@")[0].lower()
        return local.startswith(self.local_part.lower() + "+")


@lru_cache(maxsize=1024)
def _domain_of(from_header: str) -> str:
    _, at, domain = parseaddr(from_header)[1].rpartition("@")
    return domain.strip().lower() if at else ""


# -- the bounce -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounce:
    """What a bounce says. `kind` None: not a bounce (a success notice, an auto-reply)."""

    kind: BounceKind | None
    # The bounce addresses it carries, most trustworthy first (see the module docstring).
    addresses: tuple[str, ...]
    # A key that is the same for the same bounce received twice (its Message-ID, else its bytes).
    key: str
    action: str | None = None
    status: str | None = None  # the enhanced status code (RFC 3463), e.g. 5.1.1
    diagnostic: str | None = None  # the remote server's words, addresses taken out
    dsn: bool = False  # a delivery status notification (else a plain-text bounce)

    def detail(self) -> dict[str, str | bool]:
        """What the timeline shows of it."""
        out: dict[str, str | bool] = {"bounce": self.kind or "none", "dsn": self.dsn}
        for name in ("action", "status", "diagnostic"):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out


def parse_bounce(raw: bytes, envelope_recipients: Sequence[str] = ()) -> Bounce:
    """Reads a bounce (see the module docstring). Never raises."""
    key = hashlib.sha256(raw).hexdigest()
    try:
        message = email.message_from_bytes(raw[:MAX_BOUNCE_BYTES])
        message_id = _header(message, "Message-ID").strip()
        if message_id:
            key = hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()
        addresses = _addresses(message, envelope_recipients)
        report = _delivery_status(message)
        if report is not None:
            return _from_report(report, addresses, key)
        if _is_auto_reply(message):
            return Bounce(None, addresses, key)
        return _from_text(message, addresses, key)
    except Exception:  # a parser bug or a pathological message must not lose the envelope's address
        return Bounce("hard", _unique(envelope_recipients), key)


def _header(message: email.message.Message, name: str) -> str:
    value = message.get(name)
    return "" if value is None else str(value)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for v in values:
        v = v.strip().strip("<>").strip()
        if v and "@" in v:
            seen.setdefault(v, None)
    return tuple(seen)


def _addresses(message: email.message.Message, envelope_recipients: Sequence[str]) -> tuple[str, ...]:
    found: list[str] = list(envelope_recipients)
    for name in _RECIPIENT_HEADERS:
        values = [str(v) for v in message.get_all(name) or ()]
        found += [addr for _, addr in getaddresses(values)]
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            originals = inner if isinstance(inner, list) else []
            for original in originals:
                if isinstance(original, email.message.Message):
                    found.append(parseaddr(_header(original, "Return-Path"))[1])
        elif kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = email.message_from_bytes(payload)
                found.append(parseaddr(_header(headers, "Return-Path"))[1])
    return _unique(found)


def _delivery_status(message: email.message.Message) -> list[email.message.Message] | None:
    """The blocks of the message/delivery-status part (per-message first), or None when there is none."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        encoding = _header(part, "Content-Transfer-Encoding").strip().lower()
        if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
            return [p for p in payload if isinstance(p, email.message.Message)]
        # Encoded: the email package parsed the encoded text as fields; decode it and read them here.
        if isinstance(payload, list):
            encoded = "".join(
                str(p.get_payload()) if isinstance(p, email.message.Message) else "" for p in payload
            )
        else:
            encoded = str(payload)
        try:
            if encoding == "base64":
                text = base64.b64decode(re.sub(r"\s+", "", encoded))
            else:
                text = quopri.decodestring(encoded.encode("ascii", "replace"))
        except (binascii.Error, ValueError):
            return []
        blocks = re.split(rb"\r?\n[ \t]*\r?\n", text.strip())
        return [email.message_from_bytes(b + b"\n") for b in blocks]
    return None


def _from_report(blocks: list[email.message.Message], addresses: tuple[str, ...], key: str) -> Bounce:
    hard: tuple[str, str | None, str | None] | None = None
    soft: tuple[str, str | None, str | None] | None = None
    for block in blocks[1:] or blocks:
        action = _header(block, "Action").strip().lower() or None
        match = _STATUS.search(_header(block, "Status"))
        status = match.group(0) if match else None
        diagnostic = _header(block, "Diagnostic-Code").partition(";")[2].strip() or None
        said = provider_said(" ".join(diagnostic.split())) if diagnostic else None
        seen = (action or "", status, said)
        if action == "failed" or (action is None and status and status.startswith("5")):
            hard = hard or seen
        elif action == "delayed" or (action is None and status and status.startswith("4")):
            soft = soft or seen
    if hard is not None:
        return Bounce("hard", addresses, key, hard[0] or None, hard[1], hard[2], dsn=True)
    if soft is not None:
        return Bounce("soft", addresses, key, soft[0] or None, soft[1], soft[2], dsn=True)
    return Bounce(None, addresses, key, dsn=True)


def _is_auto_reply(message: email.message.Message) -> bool:
    # Not `Auto-Submitted: auto-replied`: Postfix and Exim put it on their bounces too.
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    if _header(message, "Precedence").strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_REPLY_SUBJECT.match(_header(message, "Subject")))


def _from_text(message: email.message.Message, addresses: tuple[str, ...], key: str) -> Bounce:
    text = ""
    for part in message.walk():
        if part.get_content_maintype() == "text" and len(text) < 64 * 1024:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                text += payload.decode(part.get_content_charset() or "utf-8", "replace")[: 64 * 1024]
    codes = [m.group(0) for m in _STATUS.finditer(text) if m.group(1) in "45"]
    sender = parseaddr(_header(message, "From"))[1].partition("@")[0].lower()
    if (
        not codes
        and sender not in _BOUNCE_SENDERS
        and not _BOUNCE_SUBJECT.search(_header(message, "Subject"))
    ):
        return Bounce(None, addresses, key)
    hard = [c for c in codes if c.startswith("5")]
    if codes and not hard:
        return Bounce("soft", addresses, key, status=codes[0])
    return Bounce("hard", addresses, key, status=hard[0] if hard else None)
