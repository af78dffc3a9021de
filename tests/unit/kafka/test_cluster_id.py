"""The KRaft cluster id handed to the storage tool never looks like a command-line option."""

import base64
import uuid
from unittest import mock

from streams.kafka import launcher


def test_an_id_starting_with_a_dash_is_drawn_again() -> None:
    dash_first = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    plain = uuid.UUID(bytes=bytes([0x10]) + bytes(15))
    assert base64.urlsafe_b64encode(dash_first.bytes).decode().startswith("-")
    with mock.patch.object(launcher.uuid, "uuid4", side_effect=[dash_first, dash_first, plain]):
        cluster_id = launcher._cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")


def test_ids_are_22_url_safe_characters() -> None:
    for _ in range(2000):
        cluster_id = launcher._cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
