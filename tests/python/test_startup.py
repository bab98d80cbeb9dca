"""The optional libraries (oneDNN, MPI, FluidSynth, libpng) are opened at first
use, not linked: importing aria_c and tokenizing maps none of them, and
aria_libs_describe opens each (src/base/dynlib.h)."""
import subprocess
import sys

from conftest import ROOT

OPTIONAL = ("libdnnl", "libmpi.so", "libfluidsynth", "libpng")


def test_library_links_no_optional_library():
    out = subprocess.run(["readelf", "-d", "-W", "bindings/python/aria_c/libaria.so"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        import pytest
        pytest.skip("needs readelf")
    needed = [l for l in out.stdout.splitlines() if "(NEEDED)" in l]
    assert needed and not [l for l in needed if any(o in l for o in OPTIONAL)], needed


def test_import_and_tokenize_map_none():
    # a fresh interpreter: this one may have run the model tests already
    code = (
        "from aria_c import _lib\n"
        "from aria_c.midi import MidiDict\n"
        "from aria_c.tokenizer import AbsTokenizer\n"
        "t = AbsTokenizer()\n"
        "ids = t.encode(t.tokenize(MidiDict.from_midi('examples/waltz.mid')))\n"
        "assert len(ids) > 10\n"
        "maps = open('/proc/self/maps').read()\n"
        f"print(sorted({{o for o in {OPTIONAL!r} if o in maps}}))\n"
        "buf = _lib.C.create_string_buffer(1024)\n"
        "_lib.lib.aria_libs_describe(buf, 1024)\n"
        "print(buf.value.decode())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT / "bindings" / "python")})
    assert r.returncode == 0, r.stderr
    first, rest = r.stdout.split("\n", 1)
    assert first == "[]", first
    for name in ("oneDNN: ", "MPI: ", "FluidSynth: ", "libpng: "):
        assert name in rest, rest
