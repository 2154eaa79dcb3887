"""The chaos harness: a short run with every fault kind loses nothing and reads nothing corrupt."""

from __future__ import annotations

import json
import subprocess

from wirehead_core.launch import wirehead_command


def test_fifty_swaps_under_every_fault_kind_lose_nothing(tmp_path):
    out = tmp_path / "reliability.md"
    result = subprocess.run(wirehead_command("chaos", "--swaps", "50", "--quick", "--seed", "1", "--out", str(out),
                                             "--workdir", str(tmp_path / "work"), "--max-minutes", "12"),
                            capture_output=True, text=True, timeout=900)
    report = json.loads(out.with_suffix(".json").read_text())
    assert result.returncode == 0, out.read_text() + result.stderr[-3000:]
    assert report["swaps"] >= 50 and report["ok"]
    assert all(n >= 1 for n in report["faults"].values()), report["faults"]
    assert report["samples_committed"] >= 50 * 4
    assert report["samples_lost_after_commit"] == 0 and report["corrupt_reads"] == 0
    assert report["failed_reads"] == 0 and report["stuck_locks"] == 0 and report["reads"] > 0
    assert report["unasked_exits"] == []
    assert "| samples lost after commit | 0 |" in out.read_text()
