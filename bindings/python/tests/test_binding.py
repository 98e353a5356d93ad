"""pytest for the Python binding: struct layouts agree with c_api.h (a C
program built from the header prints the sizes and offsets), the function
table version, and the 2-rank TP linear check over UCX via tppp-run."""
import ctypes as C
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import tppp  # noqa: E402


def test_struct_layouts_match_the_header():
    out = subprocess.run([os.environ["TPPP_STRUCT_LAYOUT"]], check=True, capture_output=True, text=True).stdout
    layout = json.loads(out)
    for name, cls in tppp.STRUCTS.items():
        assert layout[name]["size"] == C.sizeof(cls), name
        for field, off in layout[name]["offsets"].items():
            assert getattr(cls, field).offset == off, f"{name}.{field}"


def test_version_and_errors():
    assert tppp.version()[0] == tppp.VERSION_MAJOR
    with pytest.raises(tppp.TpppError) as e:
        tppp.Group.from_env(tp_size=0)  # no launcher variables, or a bad tp: either way a TpppError
    assert e.value.status in (1, 2)
    assert e.value.message


def test_two_rank_tp_linear_over_ucx():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    r = subprocess.run([os.environ["TPPP_RUN"], "-n", "2", "--timeout", "120", "--", sys.executable,
                        os.path.join(HERE, "tp_linear_rank.py")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("OK") == 2, r.stdout
