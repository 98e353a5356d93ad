"""pytest for the Python binding: struct layouts agree with c_api.h (a C
program built from the header prints the sizes and offsets), the function
table version, and the 2-rank TP linear check over UCX via tppp-run."""
import ctypes as C
import json
import os
import shutil
import subprocess
import sys

import numpy as np
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


REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
NO_LAUNCHER = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "SLURM_PROCID",
                            "SLURM_NTASKS", "MASTER_ADDR", "MASTER_PORT")}


def run_py(code, env, cwd=None):
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)


def test_versions_agree():
    """The package, pyproject.toml, CMake's project version and the loaded library say the same version."""
    with open(os.path.join(os.path.dirname(HERE), "pyproject.toml")) as f:
        assert f'version = "{tppp.__version__}"' in f.read()
    with open(os.path.join(REPO, "CMakeLists.txt")) as f:
        assert f"project(tppp VERSION {tppp.__version__} " in f.read()
    assert ".".join(map(str, tppp.version())) == tppp.__version__


def test_bad_enum_values_raise_tppperror_and_teardown_is_quiet():
    code = """
import numpy as np, tppp
g = tppp.Group.from_env()          # no launcher: a group of one
for bad in (lambda: g.all_reduce(np.ones(2, np.float32), scope="bogus"),
            lambda: g.all_reduce(np.ones(2, np.float32), op="avg"),
            lambda: g.all_gather(np.ones(2, np.float32), scope=7),
            lambda: tppp.Layer(g, "conv", 4, 4),
            lambda: tppp.Layer(g, "column", 4, 4, dtype=np.complex64)):
    try:
        bad()
        raise SystemExit("accepted a bad value")
    except tppp.TpppError as e:
        assert e.status == 1, e
print("OK", g.all_reduce(np.ones(2, np.float32))[0])
"""
    r = run_py(code, dict(NO_LAUNCHER, PYTHONPATH=os.path.dirname(HERE)))
    assert r.returncode == 0 and "OK 1.0" in r.stdout, r.stdout + r.stderr
    assert "Exception ignored" not in r.stderr and "AttributeError" not in r.stderr, r.stderr


def test_library_is_found_from_a_directory_and_a_miss_names_every_place(tmp_path):
    lib = os.environ["TPPP_LIBRARY"]
    pkg = tmp_path / "pkg"
    shutil.copytree(os.path.join(os.path.dirname(HERE), "tppp"), pkg / "tppp")  # away from the repo's build/
    env = dict(NO_LAUNCHER, PYTHONPATH=str(pkg), TPPP_LIBRARY=os.path.dirname(lib))
    r = run_py("import tppp; print(tppp.version())", env)
    assert r.returncode == 0, r.stderr
    env = dict(NO_LAUNCHER, PYTHONPATH=str(pkg), TPPP_LIBRARY="/nonexistent/libtppp.so", PKG_CONFIG_PATH="/nonexistent")
    env.pop("LD_LIBRARY_PATH", None)
    r = run_py("import tppp", env)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "TPPP_LIBRARY: /nonexistent/libtppp.so" in r.stderr, r.stderr
    assert "the build tree" in r.stderr and "the loader path" in r.stderr, r.stderr


def test_checkpoint_loads_what_safetensors_reads():
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = os.path.join(REPO, "tests", "fixtures", "data", "llama")
    want = safetensors_numpy.load_file(os.path.join(path, "model.safetensors"))
    with tppp.Checkpoint(path) as c:
        names = c.names()
        assert names == sorted(want)
        for name in ("model.norm.weight", "model.layers.0.mlp.down_proj.weight"):
            got = c.load(name)
            assert got.shape == want[name].shape and got.dtype == want[name].dtype
            assert np.array_equal(got, want[name]), name
        assert c.info("model.norm.weight")["shape"] == want["model.norm.weight"].shape
        with pytest.raises(tppp.TpppError) as e:
            c.load("no.such.tensor")
        assert "no.such.tensor" in e.value.message


def test_scheduler_and_dlpack_two_stages():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    r = subprocess.run([os.environ["TPPP_RUN"], "-n", "2", "--timeout", "120", "--", sys.executable,
                        os.path.join(HERE, "sched_rank.py")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("OK") == 2, r.stdout


def test_model_tp2_pp2_matches_transformers():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    fixtures = os.path.join(REPO, "tests", "fixtures", "data")
    r = subprocess.run([os.environ["TPPP_RUN"], "-n", "4", "--timeout", "120", "--", sys.executable,
                        os.path.join(HERE, "model_rank.py"), fixtures], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("OK") == 4, r.stdout
