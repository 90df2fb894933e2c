"""The DECOMMISSIONED marker is durable: the file and its directory are fsynced before the node says it left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from node.app import mark_decommissioned
from node.cluster import rebalance as rb


def test_the_marker_is_fsynced_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    mark_decommissioned(tmp_path, 7)
    assert (tmp_path / rb.LEFT_FILE).read_text() == "left the ring at topology version 7\n"
    assert synced == ["file", "dir"]
