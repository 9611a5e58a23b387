"""Webhook signatures: the Kount RSA-PSS scheme and the Standard Webhooks HMAC scheme.

Everything here is pure. Keys, secrets and the current time are parameters, so the worker can sign every retry
afresh with the time from its injected clock, and tests can pin time exactly.

Kount scheme
    ``X-Event-Timestamp`` is an RFC 3339 UTC time; ``X-Event-Signature`` is base64 RSASSA-PSS (SHA-256,
    MGF1-SHA-256, 32-byte salt) over the timestamp's bytes followed by the raw body. Receivers fetch the
    public key as base64 DER SubjectPublicKeyInfo; during a rotation the old key stays valid for an overlap.

Standard Webhooks scheme (https://www.standardwebhooks.com)
    ``webhook-id``, ``webhook-timestamp`` (unix seconds) and ``webhook-signature``: space-separated
    ``v1,<base64 HMAC-SHA256>`` entries over ``"{id}.{timestamp}." + body``, one per secret still in use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from secrets import token_bytes

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# Re-exported: the signer's callers read whsec secrets through this module.
from passgate.whsec import WHSEC_MAX_BYTES as WHSEC_MAX_BYTES
from passgate.whsec import WHSEC_MIN_BYTES as WHSEC_MIN_BYTES
from passgate.whsec import WHSEC_PREFIX as WHSEC_PREFIX
from passgate.whsec import InvalidSigningKeyError as InvalidSigningKeyError
from passgate.whsec import decode_whsec as decode_whsec

KOUNT_TIMESTAMP_HEADER = "X-Event-Timestamp"
KOUNT_SIGNATURE_HEADER = "X-Event-Signature"
KOUNT_PSS_SALT_LENGTH = 32

STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
DEFAULT_STANDARD_TOLERANCE = timedelta(minutes=5)

DEFAULT_KEY_OVERLAP = timedelta(hours=24)
MIN_RSA_BITS = 2048


class NoActiveSigningKeyError(LookupError):
    """No signing key is currently valid; a new key has to be generated before anything can be signed."""


# --- Kount RSA-PSS ------------------------------------------------------------------------------------------


def _kount_padding() -> padding.PSS:
    # A fixed salt length (not MAX_LENGTH/AUTO) because receivers verify with exactly 32 bytes.
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=KOUNT_PSS_SALT_LENGTH)


def kount_sign(private_key: rsa.RSAPrivateKey, timestamp: str, body: bytes) -> str:
    """Base64 RSASSA-PSS signature over ``timestamp.encode() + body``."""
    signature = private_key.sign(timestamp.encode() + body, _kount_padding(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def kount_verify(public_key: rsa.RSAPublicKey, timestamp: str, body: bytes, signature_b64: str) -> bool:
    """True only for a valid signature; any malformed input is simply not a valid signature."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, timestamp.encode() + body, _kount_padding(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def format_rfc3339(moment: datetime) -> str:
    """``2026-11-29T10:00:00Z``: UTC, whole seconds, so signed bytes never depend on the caller's zone."""
    return _require_aware(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kount_headers(private_key: rsa.RSAPrivateKey, now: datetime, body: bytes) -> dict[str, str]:
    timestamp = format_rfc3339(now)
    return {
        KOUNT_TIMESTAMP_HEADER: timestamp,
        KOUNT_SIGNATURE_HEADER: kount_sign(private_key, timestamp, body),
    }


# --- RSA keys -----------------------------------------------------------------------------------------------


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits < MIN_RSA_BITS:
        raise ValueError(f"RSA keys shorter than {MIN_RSA_BITS} bits are not accepted")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_to_pem(private_key: rsa.RSAPrivateKey, passphrase: str | bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted when a passphrase is given so a database dump alone does not leak the key."""
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    else:
        encryption = serialization.BestAvailableEncryption(_as_bytes(passphrase))
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key_pem(pem: str | bytes, passphrase: str | bytes | None = None) -> rsa.RSAPrivateKey:
    password = None if passphrase is None else _as_bytes(passphrase)
    try:
        key = serialization.load_pem_private_key(_as_bytes(pem), password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # cryptography signals a missing or superfluous passphrase with TypeError and a wrong one with
        # ValueError; callers only need to know the stored key is unusable.
        raise InvalidSigningKeyError(
            "private key cannot be loaded: malformed PEM or wrong passphrase"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidSigningKeyError("webhook signing keys must be RSA keys")
    return key


def public_key_der_b64(public_key: rsa.RSAPublicKey) -> str:
    """Base64 DER SubjectPublicKeyInfo, the ``publicKey`` of ``GET /manage/v1/webhooks/public-key``."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def load_public_key_der_b64(value: str) -> rsa.RSAPublicKey:
    """The receiver's side of :func:`public_key_der_b64`."""
    try:
        key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidSigningKeyError("public key is not base64 DER SubjectPublicKeyInfo") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidSigningKeyError("webhook signing keys must be RSA keys")
    return key


# --- Key rotation -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Kount signing key as stored. ``valid_until`` None means "until a newer key replaces it"."""

    id: str
    private_pem: bytes = field(repr=False)  # kept out of repr so the key never lands in a log line
    created_at: datetime
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The key to sign with now, and every key a receiver may still verify with (newest first).

    ``valid`` includes ``active``; each key's ``valid_until`` is the effective end of its validity, which is
    what the public-key endpoint reports as ``validUntil`` (None: no end scheduled yet).
    """

    active: SigningKey
    valid: tuple[SigningKey, ...]


def key_ring(keys: Iterable[SigningKey], now: datetime, overlap: timedelta = DEFAULT_KEY_OVERLAP) -> KeyRing:
    """Pick the active key and the keys still valid at ``now``.

    Rotating is just adding a key: a key without an explicit ``valid_until`` stays valid for ``overlap``
    after the next newer key was created, so receivers that cached the old public key keep verifying while
    they refetch. An explicit ``valid_until`` (e.g. set when revoking a key) always wins. Keys created after
    ``now`` are not used or published yet. The active key is the newest one still valid; when none is,
    :class:`NoActiveSigningKeyError` tells the caller to generate a fresh key.
    """
    _require_aware(now)
    if overlap < timedelta(0):
        raise ValueError("overlap cannot be negative")
    started = sorted(
        (key for key in keys if key.created_at <= now), key=lambda k: (k.created_at, k.id), reverse=True
    )
    valid: list[SigningKey] = []
    successor: SigningKey | None = None
    for key in started:
        until = key.valid_until
        if until is None and successor is not None:
            until = successor.created_at + overlap
        if until is None or now < until:
            valid.append(replace(key, valid_until=until))
        successor = key
    if not valid:
        raise NoActiveSigningKeyError("no webhook signing key is valid now")
    return KeyRing(active=valid[0], valid=tuple(valid))


# --- Standard Webhooks --------------------------------------------------------------------------------------


def generate_whsec(nbytes: int = 32) -> str:
    if not WHSEC_MIN_BYTES <= nbytes <= WHSEC_MAX_BYTES:
        raise ValueError(f"Standard Webhooks secrets are {WHSEC_MIN_BYTES}-{WHSEC_MAX_BYTES} bytes")
    return WHSEC_PREFIX + base64.b64encode(token_bytes(nbytes)).decode("ascii")


def _standard_digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def _check_msg_id(msg_id: str) -> None:
    # The id travels in a header, so anything that could split or fold the header is refused.
    if not msg_id or not msg_id.isascii() or not msg_id.isprintable() or " " in msg_id:
        raise ValueError("webhook-id must be non-empty printable ASCII without spaces")


def standard_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``f"{msg_id}.{timestamp}.".encode() + body``."""
    _check_msg_id(msg_id)
    if timestamp < 0:
        raise ValueError("timestamp must be unix seconds")
    digest = _standard_digest(decode_whsec(secret), msg_id, timestamp, body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def standard_headers(secrets: Sequence[str], msg_id: str, now: datetime, body: bytes) -> dict[str, str]:
    """Headers for one delivery attempt: one signature per secret, several during a rotation overlap."""
    if isinstance(secrets, str):
        # A bare string is a Sequence[str] too, and would be signed with one "secret" per character.
        raise TypeError("secrets must be a list of whsec_ secrets, not a single string")
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    timestamp = math.floor(_require_aware(now).timestamp())
    return {
        STANDARD_ID_HEADER: msg_id,
        STANDARD_TIMESTAMP_HEADER: str(timestamp),
        STANDARD_SIGNATURE_HEADER: " ".join(standard_sign(s, msg_id, timestamp, body) for s in secrets),
    }


def standard_verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance: timedelta = DEFAULT_STANDARD_TOLERANCE,
) -> bool:
    """True when one ``v1`` signature matches and the timestamp is within ``tolerance`` of ``now``.

    Bad or missing headers give False; only an unusable ``secret`` (a configuration error) raises.
    """
    key = decode_whsec(secret)
    _require_aware(now)
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get(STANDARD_ID_HEADER, "")
    raw_timestamp = lowered.get(STANDARD_TIMESTAMP_HEADER, "")
    signatures = lowered.get(STANDARD_SIGNATURE_HEADER, "")
    # The length cap keeps int() cheap on hostile input; 12 digits reach well past year 30000.
    if not (msg_id and signatures and raw_timestamp.isascii() and raw_timestamp.isdigit()):
        return False
    if len(raw_timestamp) > 12:
        return False
    timestamp = int(raw_timestamp)
    # Replays of a captured delivery are only accepted inside the window.
    if abs(now.timestamp() - timestamp) > tolerance.total_seconds():
        return False
    expected = _standard_digest(key, msg_id, timestamp, body)
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, candidate):
            return True
    return False


# --- helpers ------------------------------------------------------------------------------------------------


def _require_aware(moment: datetime) -> datetime:
    # A naive datetime would be read in the server's local zone and shift every signed timestamp.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
