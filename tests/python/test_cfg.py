"""Generation steered by an embedding (classifier-free guidance) from Python
beside `aria generate --embedding` (a tiny random model with an
embedding_adapter made with `aria init --heads lm,adapter`)."""
import subprocess

import numpy as np
import pytest

from aria_c import Model
from conftest import LOCAL, midi_of


def test_generate_with_embedding_matches_cli(aria_bin, tmp_path):
    model = tmp_path / "gen.safetensors"
    subprocess.run([aria_bin, "init", "--config", "tiny", "--heads", "lm,adapter", "--seed", "3", "-o", str(model)],
                   check=True, capture_output=True)
    emb = np.sin(np.arange(32, dtype=np.float32) * 0.7).astype(np.float32)
    np.save(tmp_path / "style.npy", emb)
    prompt = midi_of(LOCAL / "waltz")
    r = subprocess.run([aria_bin, "generate", "--model", str(model), "--prompt", str(prompt), "--max-new", "24",
                        "--seed", "5", "--variations", "2", "--embedding", str(tmp_path / "style.npy"), "--cfg",
                        "1.5", "--print-ids", "--out-dir", str(tmp_path)], check=True, capture_output=True, text=True)
    cli = [list(map(int, line.split())) for line in r.stdout.splitlines() if line.strip()]
    m = Model(str(model))
    got = m.generate(str(prompt), max_new=24, seed=5, variations=2, return_ids=True, embedding=emb, cfg=1.5)
    assert [g.tolist() for g in got] == cli
    plain = m.generate(str(prompt), max_new=24, seed=5, variations=2, return_ids=True)
    assert [g.tolist() for g in plain] != cli  # the embedding changes the draws
    with pytest.raises(Exception, match="32"):
        m.generate(str(prompt), max_new=4, embedding=emb[:16])
