"""libaria.so as a library: only the functions include/aria.h declares are
exported (internal helpers such as aria_fail stay local), the soname carries
the major version, and a C program links with the pkg-config file."""
import os
import re
import shutil
import subprocess

import pytest

from aria_c import _lib
from conftest import ROOT


def declared():
    text = (ROOT / "include" / "aria.h").read_text()
    return set(re.findall(r"\b(aria_[a-z0-9_]+)\s*\(", text))


def test_public_exported_internal_hidden():
    for name in ("aria_midi_read_file", "aria_tokenize", "aria_model_load", "aria_generate"):
        assert name in declared() and hasattr(_lib.lib, name)
    assert "aria_fail" not in declared()
    assert not hasattr(_lib.lib, "aria_fail")


@pytest.mark.skipif(not shutil.which("readelf"), reason="needs readelf")
def test_soname_and_exports():
    so = _lib.lib._name
    out = subprocess.run(["readelf", "-d", "--dyn-syms", "-W", so], capture_output=True, text=True, check=True).stdout
    assert re.search(r"SONAME.*\[libaria\.so\.\d+\]", out)
    exported = {line.split()[7].split("@")[0] for line in out.splitlines()
                if re.match(r"\s*\d+:", line) and " UND " not in line and len(line.split()) >= 8
                and line.split()[4] in ("GLOBAL", "WEAK")}
    exported.discard("ARIA_0")
    assert exported and exported <= declared(), sorted(exported - declared())[:5]


@pytest.mark.skipif(not shutil.which("cc") or not shutil.which("pkg-config"), reason="needs cc and pkg-config")
def test_install_and_link(tmp_path):
    build = os.environ.get("ARIA_BUILD")
    if not build:
        pytest.skip("ARIA_BUILD not set (make test-python sets it)")
    subprocess.run(["make", "-s", f"BUILD={build}", "install", f"PREFIX={tmp_path / 'p'}"], cwd=ROOT, check=True,
                   capture_output=True)
    prog = tmp_path / "prog.c"
    prog.write_text('#include <stdio.h>\n#include "aria.h"\nint main(int c, char **v) {\n'
                    '  aria_midi m = {0}; aria_score s; aria_error e;\n'
                    '  if (aria_midi_read_file(&m, v[1], &e) || aria_score_from_midi(&s, &m, &e)) return 1;\n'
                    '  printf("%zu\\n", s.n_notes); aria_score_free(&s); aria_midi_free(&m); return 0; }\n')
    env = dict(os.environ, PKG_CONFIG_PATH=str(tmp_path / "p" / "lib" / "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "aria"], env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    subprocess.run(["cc", str(prog), *flags, f"-Wl,-rpath,{tmp_path / 'p' / 'lib'}", "-o", str(tmp_path / "prog")],
                   check=True)
    r = subprocess.run([str(tmp_path / "prog"), str(ROOT / "examples" / "waltz.mid")], capture_output=True,
                       text=True, check=True)
    assert int(r.stdout) > 0
