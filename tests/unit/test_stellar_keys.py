"""Stellar secrets: private from their first byte, and never echoed in an error."""

import json
import stat
from pathlib import Path

import pytest

from chain.stellar import Keys


def test_a_saved_key_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = Keys.generate(channels=2)
    keys.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keys.load(path).distribution.public_key == keys.distribution.public_key
    assert keys.distribution.secret not in repr(keys)


@pytest.mark.parametrize(
    "content",
    [
        {"distribution": "SBADSEEDTHATLOOKSALMOSTRIGHTXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "channels": []},
        {"distribution": "SAV76USXIJOBMEQXPANUOQM6F5LIOTLPDIDVRJBFFE2MDJXG24TAPUU7", "channels": ["SXYZ-not-a-seed"]},
    ],
)
def test_an_invalid_seed_is_reported_without_echoing_it(tmp_path: Path, content: dict[str, object]) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as raised:
        Keys.load(path)
    message = str(raised.value)
    assert "not a valid Stellar secret seed" in message
    for secret in [content["distribution"], *content["channels"]]:  # type: ignore[misc]
        assert str(secret) not in message
