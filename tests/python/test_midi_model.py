"""MidiDict methods, errors as Python exceptions, and the model from Python
beside the `aria` command (a tiny random model made with `aria init`)."""
import copy
import subprocess

import numpy as np
import pytest

from aria_c import Model
from aria_c.midi import MidiDict, normalize_midi_dict
from conftest import LOCAL, midi_of


def msg_dict(pedals=(), notes=((60, 0, 50, 64),)):
    return {"meta_msgs": [], "tempo_msgs": [], "instrument_msgs": [], "ticks_per_beat": 480, "metadata": {},
            "pedal_msgs": [{"type": "pedal", "data": int(v >= 64), "value": v, "tick": t, "channel": 0}
                           for t, v in pedals],
            "note_msgs": [{"type": "note", "data": {"pitch": p, "start": s, "end": e, "velocity": v}, "tick": s,
                           "channel": 0} for p, s, e, v in notes]}


def test_defaults_and_attributes():
    md = MidiDict.from_msg_dict(msg_dict())
    assert md.tempo_msgs == [{"type": "tempo", "data": 500000, "tick": 0}]
    assert md.instrument_msgs == [{"type": "instrument", "data": 0, "tick": 0, "channel": 0}]
    assert md.program_to_instrument[40] == "strings" and md.ticks_per_beat == 480
    assert md.tick_to_ms(960) == 1000


def test_apply_pedal_threshold():
    md = MidiDict.from_msg_dict(msg_dict(pedals=[(0, 63), (1, 72), (2, 71), (3, 127)]))
    assert md.apply_pedal_threshold(72) is md
    assert [m["data"] for m in md.pedal_msgs] == [0, 1, 0, 1]
    md = MidiDict.from_msg_dict(msg_dict(pedals=list(enumerate([0, 63, 72, 70, 57, 56, 65, 73, 60, 55]))))
    md.apply_pedal_threshold(threshold=64, buffer=8, transitions_only=True)
    assert [(m["tick"], m["data"]) for m in md.pedal_msgs] == [(2, 1), (5, 0), (7, 1), (9, 0)]


def test_resolve_pedal_and_redundant():
    md = MidiDict.from_msg_dict(msg_dict(pedals=[(10, 127), (100, 0), (200, 127), (300, 0)],
                                         notes=[(60, 0, 50, 64), (62, 120, 150, 64)]))
    md.remove_redundant_pedals()  # the second press holds no note
    assert [m["tick"] for m in md.pedal_msgs] == [10, 100]
    md.resolve_pedal()
    assert md.note_msgs[0]["data"]["end"] == 100 and md.pedal_resolved


def test_remove_instruments_and_hash():
    md = MidiDict.from_midi(midi_of(LOCAL / "basic"))
    h = md.calculate_hash()
    again = MidiDict.from_midi(midi_of(LOCAL / "basic"))
    again.meta_msgs.append({"type": "text", "data": "x"})
    again.metadata["composer"] = "bach"
    assert again.calculate_hash() == h
    md.remove_instruments({"strings": True})
    assert all(m["channel"] != 1 for m in md.note_msgs) and md.calculate_hash() != h


def test_deepcopy_and_normalize(tok):
    md = MidiDict.from_midi(midi_of(LOCAL / "basic"))
    cp = copy.deepcopy(md)
    cp.note_msgs[0]["data"]["pitch"] = 1
    assert md.note_msgs[0]["data"]["pitch"] != 1
    n = normalize_midi_dict(md, tok.config["ignore_instruments"], tok.config["instrument_programs"], 10, 5000, 60,
                            tok._quantize_velocity)
    assert n.ticks_per_beat == 500 and not n.pedal_msgs
    assert all(m["data"]["start"] % 10 == 0 for m in n.note_msgs)
    assert {m["channel"] for m in n.note_msgs} <= {m["channel"] for m in n.instrument_msgs}


def test_errors_are_python_exceptions(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mid"):
        MidiDict.from_midi(tmp_path / "nope.mid")
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file at all")
    with pytest.raises(ValueError, match="bad.mid: "):
        MidiDict.from_midi(bad)
    with pytest.raises(FileNotFoundError):
        Model(tmp_path / "missing.safetensors")


@pytest.fixture(scope="module")
def tiny(aria_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    path = d / "tiny.safetensors"
    subprocess.run([aria_bin, "init", "--config", "tiny", "--heads", "lm,emb", "-o", str(path)], check=True)
    return path


def test_logits_match_cli(aria_bin, tiny, tmp_path):
    ids = [6, 0, 827, 17227, 16806, 827, 17237, 16806]
    (tmp_path / "ids.txt").write_text(" ".join(map(str, ids)))
    subprocess.run([aria_bin, "logits", "--model", str(tiny), "--ids", str(tmp_path / "ids.txt"), "-o",
                    str(tmp_path / "l.bin")], check=True)
    cli = np.fromfile(tmp_path / "l.bin", dtype=np.float32).reshape(len(ids), -1)
    m = Model(tiny)
    got = m.logits(ids)
    assert got.shape == (len(ids), 17727)
    np.testing.assert_allclose(got, cli, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.logits(np.array([ids, ids]))[1], got, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        m.logits([99999])


def test_generate_matches_cli(aria_bin, tiny, tmp_path):
    prompt = midi_of(LOCAL / "waltz")
    r = subprocess.run([aria_bin, "generate", "--model", str(tiny), "--prompt", str(prompt), "--max-new", "24",
                        "--seed", "5", "--variations", "2", "--print-ids", "--out-dir", str(tmp_path)],
                       check=True, capture_output=True, text=True)
    cli = [list(map(int, line.split())) for line in r.stdout.splitlines() if line.strip()]
    m = Model(tiny)
    got = m.generate(str(prompt), max_new=24, seed=5, variations=2, return_ids=True)
    assert [g.tolist() for g in got] == cli
    mds = m.generate(MidiDict.from_midi(prompt), max_new=24, seed=5, variations=2)
    assert len(mds) == 2 and all(isinstance(x, MidiDict) for x in mds)


def test_generate_max_silence_matches_cli(aria_bin, tiny, tmp_path):
    """max_silence reaches the sampler as --max-silence does: a 1-second
    limit changes what the random model plays, and Python and the CLI agree."""
    prompt = str(midi_of(LOCAL / "waltz"))
    m = Model(tiny)
    got = {}
    for s in (0, 1):
        r = subprocess.run([aria_bin, "generate", "--model", str(tiny), "--prompt", prompt, "--max-new", "300",
                            "--seed", "5", "--max-silence", str(s), "--print-ids", "--out-dir", str(tmp_path)],
                           check=True, capture_output=True, text=True)
        got[s] = m.generate(prompt, max_new=300, seed=5, max_silence=s, return_ids=True)[0].tolist()
        assert got[s] == list(map(int, r.stdout.split()))
    assert got[0] != got[1]
    with pytest.raises(ValueError, match="max_silence"):
        m.generate(prompt, max_new=4, max_silence=-1)


def test_generation_config_beside_the_weights(aria_bin, tiny, tmp_path):
    """generation_config.json beside the weights: the sampling defaults of
    Model.generate, the same as aria generate's; the arguments win."""
    import shutil
    w = tmp_path / "lm.safetensors"
    shutil.copy(tiny, w)
    prompt = str(midi_of(LOCAL / "waltz"))
    greedy = Model(w).generate(prompt, max_new=12, seed=1, temp=0, return_ids=True)[0].tolist()
    assert Model(w).sampling_defaults() == {"temp": 0.98, "min_p": 0.035, "top_p": 0.0}
    (tmp_path / "generation_config.json").write_text('{"temperature": 0, "top_p": 0.9}')
    m = Model(w)
    assert m.sampling_defaults() == {"temp": 0.0, "min_p": 0.0, "top_p": 0.9}
    assert m.generate(prompt, max_new=12, seed=7, return_ids=True)[0].tolist() == greedy
    assert m.generate(prompt, max_new=12, seed=7, temp=1.0, return_ids=True)[0].tolist() != greedy
    r = subprocess.run([aria_bin, "generate", "--model", str(w), "--prompt", prompt, "--max-new", "12", "--seed", "7",
                        "--print-ids", "--out-dir", str(tmp_path)], check=True, capture_output=True, text=True)
    assert list(map(int, r.stdout.split())) == greedy
    (tmp_path / "generation_config.json").write_text('{"temperature": 9}')
    with pytest.raises(ValueError, match="temperature"):
        Model(w).generate(prompt, max_new=4)


def test_embed_matches_cli(aria_bin, tiny, tmp_path):
    files = [str(midi_of(LOCAL / "waltz")), str(midi_of(LOCAL / "nocturne"))]
    subprocess.run([aria_bin, "embed", "--model", str(tiny), "-o", str(tmp_path / "e.npy")] + files, check=True)
    cli = np.load(tmp_path / "e.npy")
    got = Model(tiny).embed(files)
    assert got.shape == cli.shape == (2, 32)
    np.testing.assert_allclose(got, cli, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Model(tiny).embed([MidiDict.from_midi(files[0])])[0], cli[0], rtol=1e-5, atol=1e-6)


def test_pickle_round_trip(tok):
    import pickle
    import random
    md = MidiDict.from_midi(midi_of(LOCAL / "waltz"))
    back = pickle.loads(pickle.dumps(md))
    assert back.get_msg_dict() == md.get_msg_dict()
    random.seed(0)
    a = tok.tokenize(back)
    random.seed(0)
    assert a == tok.tokenize(MidiDict.from_midi(midi_of(LOCAL / "waltz")))
