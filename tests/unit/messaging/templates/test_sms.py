"""SMS encoding (`messaging.templates.sms`): alphabet, units and segments."""

import pytest

from passgate.messaging.templates.sms import sms_info


@pytest.mark.parametrize(
    ("body", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("é" * 160, "GSM-7", 160, 1),
        ("€", "GSM-7", 2, 1),
        ("a" * 158 + "€", "GSM-7", 160, 1),
        ("a" * 159 + "€", "GSM-7", 161, 2),
        ("{}[]~|^\\", "GSM-7", 16, 1),
        ("ж" * 70, "UCS-2", 70, 1),
        ("ж" * 71, "UCS-2", 71, 2),
        ("ж" * 134, "UCS-2", 134, 2),
        ("ж" * 135, "UCS-2", 135, 3),
        ("a" * 159 + "ç", "UCS-2", 160, 3),
        ("😀", "UCS-2", 2, 1),
        ("Hi 😀", "UCS-2", 5, 1),
    ],
)
def test_sms_info(body, encoding, units, segments):
    info = sms_info(body)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)
    assert info.characters == len(body)


def test_an_escape_pair_is_not_split_across_segments():
    # 152 + 2 would straddle the first part's 153 units, so the euro sign starts the second part.
    assert sms_info("a" * 152 + "€" + "a" * 152).segments == 3
    assert sms_info("a" * 151 + "€" + "a" * 153).segments == 2


def test_a_surrogate_pair_is_not_split_across_segments():
    assert sms_info("ж" * 66 + "😀" + "ж" * 66).segments == 3
    assert sms_info("ж" * 65 + "😀" + "ж" * 67).segments == 2
