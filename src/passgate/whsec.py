"""Standard Webhooks secrets (`whsec_` and base64): read and checked here, for the webhook signer and for the
settings check of the SMS gateway's secret. Pure: no I/O."""

from __future__ import annotations

import base64
import binascii

WHSEC_PREFIX = "whsec_"
WHSEC_MIN_BYTES = 24
WHSEC_MAX_BYTES = 64


class InvalidSigningKeyError(ValueError):
    """A stored key or secret cannot be used: malformed, wrong passphrase, wrong type or too short."""


def decode_whsec(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret; also usable to validate a secret when it is configured."""
    encoded = secret.removeprefix(WHSEC_PREFIX)
    try:
        # Padding is restored because the reference libraries accept secrets without it.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSigningKeyError("webhook secret is not whsec_ followed by base64") from None
    if not WHSEC_MIN_BYTES <= len(key) <= WHSEC_MAX_BYTES:
        raise InvalidSigningKeyError(f"webhook secret must hold {WHSEC_MIN_BYTES}-{WHSEC_MAX_BYTES} bytes")
    return key
