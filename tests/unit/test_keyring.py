"""passgate.keyring: the keyed hash against the standard library's HMAC."""

from __future__ import annotations

import hashlib
import hmac
import random

from passgate.keyring import HmacSha256, KeyRing


def test_hmac_sha256_gives_the_standard_librarys_digest_on_generated_keys_and_messages() -> None:
    rng = random.Random(7)
    # Keys shorter than, as long as and longer than the block (64 bytes), messages of any length.
    for length in [0, 1, 31, 32, 33, 63, 64, 65, 100, 200]:
        for _ in range(40):
            key = rng.randbytes(length)
            mac = HmacSha256(key)
            for _ in range(5):
                message = rng.randbytes(rng.choice([0, 1, 5, 55, 56, 64, 65, 200, 1000]))
                assert mac.hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()


def test_keyed_hash_is_hmac_sha256_under_the_key_it_names() -> None:
    ring = KeyRing([b"newest secret", b"older secret"])
    rng = random.Random(11)
    for _ in range(300):
        purpose = rng.choice(["destination", "account", "code", "link"])
        value = "".join(rng.choice("ab@.+é\x00 19") for _ in range(rng.randrange(0, 40)))
        message = f"{purpose}\x00{value}".encode()
        for key in ring._hash_keys:
            expected = hmac.new(key.key, message, hashlib.sha256).hexdigest()
            assert ring.keyed_hash(purpose, value, key.id) == expected
            assert ring.matches(purpose, value, expected, key.id)
        assert ring.keyed_hash(purpose, value) == ring.keyed_hash(purpose, value, ring.current_hash_key_id)
        assert ring.all_hashes(purpose, value) == [
            hmac.new(k.key, message, hashlib.sha256).hexdigest() for k in ring._hash_keys
        ]
