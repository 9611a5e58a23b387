import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from passgate.webhooks.signing import (
    DEFAULT_KEY_OVERLAP,
    InvalidSigningKeyError,
    NoActiveSigningKeyError,
    SigningKey,
    decode_whsec,
    format_rfc3339,
    generate_rsa_key,
    generate_whsec,
    key_ring,
    kount_headers,
    kount_sign,
    kount_verify,
    load_private_key_pem,
    load_public_key_der_b64,
    private_key_to_pem,
    public_key_der_b64,
    standard_headers,
    standard_sign,
    standard_verify,
)

NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
BODY = json.dumps(
    {
        "id": "0f6f7d0e-3c1a-4f7e-9f55-0d7f1b6c2a11",
        "eventType": "MFA.StatusUpdate",
        "apiVersion": "v1",
        "mfaStatus": "VERIFIED",
        "channel": "EMAIL",
        "occurredAt": "2026-11-29T10:00:00Z",
    },
    separators=(",", ":"),
).encode()


@pytest.fixture(scope="module")
def key():
    return generate_rsa_key()


@pytest.fixture(scope="module")
def other_key():
    return generate_rsa_key()


def flip_one_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- Kount --------------------------------------------------------------------------------------------------


def test_kount_round_trip(key):
    signature = kount_sign(key, "2026-11-29T10:00:00Z", BODY)

    assert kount_verify(key.public_key(), "2026-11-29T10:00:00Z", BODY, signature)


@pytest.mark.parametrize("index", [0, len(BODY) // 2, len(BODY) - 1])
def test_kount_body_changed_by_one_byte_fails(key, index):
    signature = kount_sign(key, "2026-11-29T10:00:00Z", BODY)

    assert not kount_verify(key.public_key(), "2026-11-29T10:00:00Z", flip_one_byte(BODY, index), signature)


def test_kount_timestamp_changed_fails(key):
    signature = kount_sign(key, "2026-11-29T10:00:00Z", BODY)

    assert not kount_verify(key.public_key(), "2026-11-29T10:00:01Z", BODY, signature)


def test_kount_signature_from_another_key_fails(key, other_key):
    signature = kount_sign(other_key, "2026-11-29T10:00:00Z", BODY)

    assert not kount_verify(key.public_key(), "2026-11-29T10:00:00Z", BODY, signature)


@pytest.mark.parametrize("bad", ["", "not base64!", "AAAA", "====", "é"])
def test_kount_verify_returns_false_on_malformed_signature(key, bad):
    assert not kount_verify(key.public_key(), "2026-11-29T10:00:00Z", BODY, bad)


def test_kount_verify_returns_false_on_truncated_signature(key):
    signature = base64.b64decode(kount_sign(key, "2026-11-29T10:00:00Z", BODY))

    truncated = base64.b64encode(signature[:-1]).decode()

    assert not kount_verify(key.public_key(), "2026-11-29T10:00:00Z", BODY, truncated)


def test_receiver_verifies_with_key_loaded_from_published_der(key):
    published = public_key_der_b64(key.public_key())
    headers = kount_headers(key, NOW, BODY)

    # What a receiver does with only cryptography and the publicKey from the management API.
    receiver_key = serialization.load_der_public_key(base64.b64decode(published))
    receiver_key.verify(
        base64.b64decode(headers["X-Event-Signature"]),
        headers["X-Event-Timestamp"].encode() + BODY,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_published_key_is_der_subject_public_key_info(key):
    der = base64.b64decode(public_key_der_b64(key.public_key()))

    assert der == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_public_key_der_b64(public_key_der_b64(key.public_key())).public_numbers() == (
        key.public_key().public_numbers()
    )


@pytest.mark.parametrize("salt_length", [0, 20, 31, 33, 64])
def test_kount_salt_is_exactly_32_bytes(key, salt_length):
    signature = base64.b64decode(kount_sign(key, "2026-11-29T10:00:00Z", BODY))
    message = b"2026-11-29T10:00:00Z" + BODY
    public_key = key.public_key()

    public_key.verify(
        signature, message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    )
    with pytest.raises(InvalidSignature):
        public_key.verify(
            signature,
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length),
            hashes.SHA256(),
        )


def test_kount_uses_mgf1_sha256_not_sha1(key):
    signature = base64.b64decode(kount_sign(key, "2026-11-29T10:00:00Z", BODY))

    with pytest.raises(InvalidSignature):
        key.public_key().verify(
            signature,
            b"2026-11-29T10:00:00Z" + BODY,
            padding.PSS(mgf=padding.MGF1(hashes.SHA1()), salt_length=32),
            hashes.SHA256(),
        )


def test_kount_signatures_are_salted(key):
    assert kount_sign(key, "2026-11-29T10:00:00Z", BODY) != kount_sign(key, "2026-11-29T10:00:00Z", BODY)


def test_kount_headers_use_rfc3339_utc_and_sign_that_exact_string(key):
    now = datetime(2026, 11, 29, 11, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))

    headers = kount_headers(key, now, BODY)

    assert headers["X-Event-Timestamp"] == "2026-11-29T10:00:00Z"
    assert kount_verify(key.public_key(), headers["X-Event-Timestamp"], BODY, headers["X-Event-Signature"])
    assert set(headers) == {"X-Event-Timestamp", "X-Event-Signature"}


def test_naive_datetimes_are_refused(key):
    with pytest.raises(ValueError, match="timezone-aware"):
        kount_headers(key, datetime(2026, 11, 29, 10, 0, 0), BODY)
    with pytest.raises(ValueError, match="timezone-aware"):
        format_rfc3339(datetime(2026, 11, 29, 10, 0, 0))


# --- RSA keys -----------------------------------------------------------------------------------------------


def test_pem_round_trip_without_passphrase(key):
    pem = private_key_to_pem(key)

    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_private_key_pem(pem).private_numbers() == key.private_numbers()


def test_pem_round_trip_with_passphrase(key):
    pem = private_key_to_pem(key, passphrase="correct horse battery staple")

    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = load_private_key_pem(pem.decode(), passphrase=b"correct horse battery staple")
    assert loaded.private_numbers() == key.private_numbers()


@pytest.mark.parametrize("passphrase", [None, "wrong"])
def test_encrypted_pem_needs_the_right_passphrase(key, passphrase):
    pem = private_key_to_pem(key, passphrase="correct horse battery staple")

    with pytest.raises(InvalidSigningKeyError):
        load_private_key_pem(pem, passphrase=passphrase)


def test_unencrypted_pem_with_a_passphrase_is_refused(key):
    with pytest.raises(InvalidSigningKeyError):
        load_private_key_pem(private_key_to_pem(key), passphrase="unexpected")


def test_garbage_pem_is_refused():
    with pytest.raises(InvalidSigningKeyError):
        load_private_key_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_short_rsa_keys_are_refused():
    with pytest.raises(ValueError, match="2048"):
        generate_rsa_key(1024)


def test_signing_key_repr_hides_the_private_key(key):
    signing_key = SigningKey(id="k1", private_pem=private_key_to_pem(key), created_at=NOW)

    assert "PRIVATE" not in repr(signing_key)


# --- Key rotation -------------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 6, 1, tzinfo=UTC)
OLD = SigningKey(id="old", private_pem=b"old-pem", created_at=T0)
NEW = SigningKey(id="new", private_pem=b"new-pem", created_at=T1)


def ids(keys):
    return [k.id for k in keys]


def test_single_key_is_active_with_no_end():
    ring = key_ring([OLD], T0 + timedelta(days=1))

    assert ring.active.id == "old"
    assert ids(ring.valid) == ["old"]
    assert ring.valid[0].valid_until is None


def test_before_rotation_the_old_key_signs_and_the_future_key_is_not_published():
    ring = key_ring([NEW, OLD], T1 - timedelta(seconds=1))

    assert ring.active.id == "old"
    assert ids(ring.valid) == ["old"]


def test_during_overlap_new_key_signs_and_old_key_stays_valid():
    ring = key_ring([OLD, NEW], T1 + timedelta(hours=23, minutes=59))

    assert ring.active.id == "new"
    assert ids(ring.valid) == ["new", "old"]
    assert ring.valid[1].valid_until == T1 + DEFAULT_KEY_OVERLAP
    assert ring.valid[0].valid_until is None


def test_after_overlap_old_key_is_no_longer_valid():
    ring = key_ring([OLD, NEW], T1 + timedelta(hours=24))

    assert ring.active.id == "new"
    assert ids(ring.valid) == ["new"]


def test_overlap_is_a_parameter():
    assert ids(key_ring([OLD, NEW], T1 + timedelta(hours=2), overlap=timedelta(hours=1)).valid) == ["new"]
    assert ids(key_ring([OLD, NEW], T1 + timedelta(hours=47), overlap=timedelta(hours=48)).valid) == [
        "new",
        "old",
    ]


def test_explicit_valid_until_wins_over_the_overlap():
    old = SigningKey(id="old", private_pem=b"old-pem", created_at=T0, valid_until=T1 + timedelta(days=7))

    ring = key_ring([old, NEW], T1 + timedelta(days=3))

    assert ids(ring.valid) == ["new", "old"]
    assert ring.valid[1].valid_until == T1 + timedelta(days=7)


def test_newest_expired_key_falls_back_to_newest_unexpired():
    revoked = SigningKey(id="new", private_pem=b"new-pem", created_at=T1, valid_until=T1 + timedelta(hours=1))

    ring = key_ring([OLD, revoked], T1 + timedelta(hours=2))

    assert ring.active.id == "old"
    assert ids(ring.valid) == ["old"]


def test_three_generations_only_the_last_two_overlap():
    newest = SigningKey(id="newest", private_pem=b"x", created_at=T1 + timedelta(days=30))

    ring = key_ring([OLD, NEW, newest], T1 + timedelta(days=30, hours=1))

    assert ids(ring.valid) == ["newest", "new"]


def test_no_valid_key_raises():
    with pytest.raises(NoActiveSigningKeyError):
        key_ring([], NOW)
    with pytest.raises(NoActiveSigningKeyError):
        key_ring([NEW], T1 - timedelta(seconds=1))
    expired = SigningKey(id="gone", private_pem=b"x", created_at=T0, valid_until=T1)
    with pytest.raises(NoActiveSigningKeyError):
        key_ring([expired], T1)


def test_key_ring_refuses_naive_now_and_negative_overlap():
    with pytest.raises(ValueError):
        key_ring([OLD], datetime(2026, 2, 1))
    with pytest.raises(ValueError):
        key_ring([OLD], T1, overlap=timedelta(hours=-1))


# --- Standard Webhooks --------------------------------------------------------------------------------------


def test_generated_secret_has_the_standard_shape():
    secret = generate_whsec()

    assert secret.startswith("whsec_")
    assert len(decode_whsec(secret)) == 32
    assert secret != generate_whsec()


@pytest.mark.parametrize("nbytes", [24, 64])
def test_generated_secret_lengths_at_the_bounds(nbytes):
    assert len(decode_whsec(generate_whsec(nbytes))) == nbytes


@pytest.mark.parametrize("nbytes", [0, 16, 23, 65])
def test_generated_secret_lengths_outside_the_bounds_are_refused(nbytes):
    with pytest.raises(ValueError):
        generate_whsec(nbytes)


@pytest.mark.parametrize(
    "secret",
    ["whsec_", "whsec_not*base64", "whsec_" + base64.b64encode(b"short").decode(), "whsec_" + "A" * 200],
)
def test_unusable_secrets_are_refused(secret):
    with pytest.raises(InvalidSigningKeyError):
        standard_sign(secret, "msg_1", 1_700_000_000, BODY)


def test_unpadded_secret_is_accepted_like_the_reference_library():
    secret = "whsec_" + base64.b64encode(bytes(range(25))).decode().rstrip("=")

    assert decode_whsec(secret) == bytes(range(25))


def test_standard_sign_matches_the_reference_library_and_the_formula():
    secret = generate_whsec()
    timestamp = 1_764_410_400

    ours = standard_sign(secret, "msg_2f8c", timestamp, BODY)

    reference = Webhook(secret).sign("msg_2f8c", datetime.fromtimestamp(timestamp, tz=UTC), BODY.decode())
    assert ours == reference
    digest = hmac.new(decode_whsec(secret), b"msg_2f8c.1764410400." + BODY, hashlib.sha256).digest()
    assert ours == "v1," + base64.b64encode(digest).decode()


def test_standard_headers_verify_with_the_standardwebhooks_package():
    secret = generate_whsec()
    # The reference verifier compares with the real clock, so this one test signs at the real time.
    now = datetime.now(UTC)

    headers = standard_headers([secret], "msg_2f8c", now, BODY)

    assert headers["webhook-id"] == "msg_2f8c"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


@pytest.mark.parametrize("index", [0, len(BODY) // 2, len(BODY) - 1])
def test_standardwebhooks_package_rejects_a_changed_byte(index):
    secret = generate_whsec()
    headers = standard_headers([secret], "msg_2f8c", datetime.now(UTC), BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(flip_one_byte(BODY, index), headers)


def test_standardwebhooks_package_rejects_a_changed_id():
    secret = generate_whsec()
    headers = standard_headers([secret], "msg_2f8c", datetime.now(UTC), BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_2f8d"})


def test_two_secrets_give_two_signatures_each_verifiable():
    old_secret, new_secret = generate_whsec(), generate_whsec()
    headers = standard_headers([new_secret, old_secret], "msg_2f8c", datetime.now(UTC), BODY)

    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old_secret).verify(BODY, headers) == json.loads(BODY)
    assert Webhook(new_secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_whsec()).verify(BODY, headers)


def test_standard_verify_accepts_own_headers_case_insensitively():
    secret = generate_whsec()
    headers = standard_headers([generate_whsec(), secret], "msg_2f8c", NOW, BODY)

    assert standard_verify(secret, headers, BODY, NOW)
    assert standard_verify(secret, {k.title(): v for k, v in headers.items()}, BODY, NOW)


def test_standard_verify_enforces_the_tolerance_window():
    secret = generate_whsec()
    headers = standard_headers([secret], "msg_2f8c", NOW, BODY)

    assert standard_verify(secret, headers, BODY, NOW + timedelta(minutes=5))
    assert not standard_verify(secret, headers, BODY, NOW + timedelta(minutes=5, seconds=1))
    assert not standard_verify(secret, headers, BODY, NOW - timedelta(minutes=5, seconds=1))
    assert standard_verify(secret, headers, BODY, NOW + timedelta(hours=1), tolerance=timedelta(hours=2))


def test_standard_verify_rejects_changes_and_other_secrets():
    secret = generate_whsec()
    headers = standard_headers([secret], "msg_2f8c", NOW, BODY)

    assert not standard_verify(secret, headers, flip_one_byte(BODY, 3), NOW)
    assert not standard_verify(generate_whsec(), headers, BODY, NOW)
    assert not standard_verify(secret, {**headers, "webhook-id": "msg_other"}, BODY, NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": ""},
        {"webhook-signature": "v1,not-base64!"},
        {"webhook-signature": "v2,AAAA"},
        {"webhook-signature": "garbage"},
        {"webhook-timestamp": "1.5e9"},
        {"webhook-timestamp": "-1"},
        {"webhook-timestamp": "9" * 40},
        {"webhook-id": ""},
    ],
)
def test_standard_verify_returns_false_on_malformed_headers(change):
    secret = generate_whsec()
    headers = {**standard_headers([secret], "msg_2f8c", NOW, BODY), **change}

    assert not standard_verify(secret, headers, BODY, NOW)


def test_standard_verify_returns_false_on_missing_headers():
    secret = generate_whsec()
    headers = standard_headers([secret], "msg_2f8c", NOW, BODY)

    for name in headers:
        partial = {k: v for k, v in headers.items() if k != name}
        assert not standard_verify(secret, partial, BODY, NOW)


def test_standard_headers_refuse_a_bare_string_and_no_secrets():
    with pytest.raises(TypeError):
        standard_headers(generate_whsec(), "msg_2f8c", NOW, BODY)
    with pytest.raises(ValueError):
        standard_headers([], "msg_2f8c", NOW, BODY)


@pytest.mark.parametrize("msg_id", ["", "msg 1", "msg\r\nX-Injected: 1", "msg\x00", "msgé"])
def test_message_ids_that_could_break_the_header_are_refused(msg_id):
    with pytest.raises(ValueError):
        standard_headers([generate_whsec()], msg_id, NOW, BODY)


def test_standard_timestamp_is_unix_seconds_rounded_down():
    headers = standard_headers([generate_whsec()], "msg_1", NOW + timedelta(microseconds=999_999), BODY)

    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
