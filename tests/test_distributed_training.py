"""Training under ``torchrun``: two CPU processes (gloo) that share a global batch take the same
steps as one process with the whole batch, write one log and one checkpoint folder, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import TINY_LM

from engine.models.lm_config import TrainConfig
from engine.training.lm import train_lm, write_synthetic_tokens

ROOT = Path(__file__).parents[1]
SCRIPT = """
import sys
from pathlib import Path
from test_distributed_training import train_tiny
train_tiny(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
"""


def train_tiny(tokens: Path, out: Path, steps: int) -> None:
    """The tiny LM (no dropout) for ``steps`` steps, global batch 4, a loss logged every step."""
    import torch

    torch.set_num_threads(1)
    tcfg = TrainConfig(warmup_steps=2, batch_size=4, eval_every=1000, eval_batches=1, log_every=1)
    train_lm(TINY_LM, tcfg, tokens, out, max_steps=steps, device="cpu", echo=None, progress=False)


def losses(out: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "lr" in r}


def torchrun(tmp_path: Path, tokens: Path, out: Path, steps: int) -> None:
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = subprocess.run(
        [*cmd, str(script), str(tokens), str(out), str(steps)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.usefixtures("one_torch_thread")
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    tokens = write_synthetic_tokens(
        tmp_path / "tok", songs={"train": 4, "valid": 1}, frames=6, n_levels=3, codebook_size=16
    )
    one, two = tmp_path / "one", tmp_path / "two"
    train_tiny(tokens, one, 4)
    torchrun(tmp_path, tokens, two, 4)
    a, b = losses(one), losses(two)
    assert list(b) == [1, 2, 3, 4]  # one writer: each step logged once
    assert len({round(v, 3) for v in a.values()}) > 1  # the model learns: losses move
    assert all(abs(a[s] - b[s]) < 1e-4 for s in a), (a, b)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step_00000004.pt"]
    assert (two / "lm.pt").is_file()

    train_tiny(tokens, one, 6)  # both resume from their step 4
    torchrun(tmp_path, tokens, two, 6)
    a, b = losses(one), losses(two)
    assert "resumed from step_00000004.pt" in (two / "train.log").read_text()
    assert list(b) == [1, 2, 3, 4, 5, 6]
    assert all(abs(a[s] - b[s]) < 1e-4 for s in a), (a, b)


def test_each_process_takes_its_share_of_the_rows() -> None:
    import numpy as np

    from engine.errors import StemtokError
    from engine.training.common import ProcessGroup

    rows = np.arange(8)
    assert ProcessGroup().shard(rows) is rows  # one process: the whole batch
    shares = [ProcessGroup(rank, 2).shard(rows).tolist() for rank in range(2)]
    assert shares == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(StemtokError, match="multiple of 3"):
        ProcessGroup(0, 3).shard(rows)
