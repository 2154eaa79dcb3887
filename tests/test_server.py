"""The server wirehead starts for local runs (`LocalServer`)."""

from __future__ import annotations

import os
import time

import pymongo
import pytest

from wirehead_core.server import LocalServer, find_server_binary


def _journal_files(server: LocalServer) -> list[str]:
    return [f for f in os.listdir(server.data_dir / "db") if f.startswith("WiredTigerLog.")]


@pytest.mark.skipif(find_server_binary()[0] != "secantus", reason="SecantusDB's journal files")
def test_journal_of_dropped_generations_is_freed_within_a_few_checkpoint_periods(tmp_path):
    """WiredTiger removes journal files only at a checkpoint: at SecantusDB's own 60 s period, 100 MB written and
    dropped stay on disk (about ten 10 MB files) for a minute; `LocalServer` checkpoints every `checkpoint_s`."""
    server = LocalServer(tmp_path / "srv", checkpoint_s=2)
    server.start()
    try:
        client = pymongo.MongoClient(server.uri)
        coll = client.db.gen
        block = os.urandom(1024 * 1024)
        for i in range(100):
            coll.insert_one({"_id": i, "d": block})
        coll.drop()
        written = len(_journal_files(server))
        assert written >= 8, f"expected the 100 MB in the journal first, found {written} files"
        deadline = time.monotonic() + 20
        while len(_journal_files(server)) > 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(_journal_files(server)) <= 2, f"journal files still on disk: {sorted(_journal_files(server))}"
        client.close()
    finally:
        server.stop()


def test_a_checkpoint_period_under_one_second_is_refused(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_s"):
        LocalServer(tmp_path / "srv", checkpoint_s=0)
