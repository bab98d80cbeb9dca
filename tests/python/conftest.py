"""Shared fixtures of the aria_c tests: where the reference vectors are (the
copy in tests/data/vectors, plus ../shared/vectors/tokenizer when present)
and the `aria` command (ARIA_BIN, set by `make test-python`)."""
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "tests" / "data" / "vectors"
SHARED = ROOT.parent / "shared" / "vectors" / "tokenizer"


def vector_dirs(need=None):
    """Per-file vector folders (the shared ones when present, else the
    local copy) that hold the file `need`."""
    base = SHARED if SHARED.is_dir() else LOCAL
    out = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and p.name != "scripts"):
        if need is None or (d / need).exists():
            out.append(d)
    return out


def load_tokens(path):
    return [tuple(t) if isinstance(t, list) else t for t in json.loads(Path(path).read_text())]


def midi_of(d):
    return d / f"{d.name}.mid"


@pytest.fixture(scope="session")
def aria_bin():
    b = os.environ.get("ARIA_BIN") or str(ROOT / "aria")
    if not os.path.exists(b):
        pytest.skip("no aria command (ARIA_BIN)")
    return b


@pytest.fixture(scope="session")
def tok():
    from aria_c.tokenizer import AbsTokenizer
    return AbsTokenizer()
