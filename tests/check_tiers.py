#!/usr/bin/env python3
"""The house rules of docs/DESIGN.md section 1, checked from the source.

  1. Tiers point one way: a file includes only its own tier or tiers below.
  2. Two implementations of one seam never include each other
     (backend/cpu vs backend/cuda, transport/ucx vs nccl vs device); only the
     tier's registry.cpp includes implementations.
  3. kernels/ includes nothing from src/.
  4. No file under src/ or kernels/ is over 600 lines.
  5. Only src/core/env.cpp reads the environment (getenv).
  6. Nothing in the repository refers to ../shared.

Usage: check_tiers.py [repo-root]   (exit 1 listing every violation)
       check_tiers.py --self-test   (plants one violation of each rule in a
                                     copy and checks that each is reported)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

# folder under src/ -> rank; equal ranks are peers (may not include each other).
TIERS = {
    "core": 0,
    "cuda": 1,
    "backend": 2, "transport": 2,
    "group": 3,
    "loader": 4, "layers": 4,
    "pipeline": 5,
    "model": 6,
    "c_api": 7,
    "tools": 8,
}
KERNELS_RANK = 1  # kernels/: beside the CUDA support, below the backends
MAX_LINES = 600
SOURCE_EXT = (".h", ".hpp", ".c", ".cpp", ".cu", ".cuh")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def tier_of(rel):
    """(tier name, rank, implementation sub-folder or None) of a repo path."""
    parts = rel.split("/")
    if parts[0] == "include":
        return ("public header", -1, None)
    if parts[0] == "kernels":
        return ("kernels", KERNELS_RANK, None)
    if parts[0] == "src" and len(parts) >= 3 and parts[1] in TIERS:
        sub = parts[2] if len(parts) >= 4 else None
        return (parts[1], TIERS[parts[1]], sub)
    return None


def resolve(root, src_rel, inc):
    """The repo path an include names: beside the file, then src/, kernels/, include/."""
    here = os.path.dirname(src_rel)
    for base in (here, "src", "kernels", "include"):
        cand = os.path.normpath(os.path.join(base, inc))
        if os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def source_files(root):
    for top in ("src", "kernels"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if f.endswith(SOURCE_EXT):
                    yield os.path.relpath(os.path.join(d, f), root)


def tracked_files(root):
    try:
        out = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
        return [f for f in out.splitlines() if f]
    except (OSError, subprocess.CalledProcessError):
        return [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                if "/.git/" not in os.path.join(d, f) and "/build" not in d]


def check(root):
    bad = []
    for rel in source_files(root):
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        lines = text.count("\n")
        if lines > MAX_LINES:
            bad.append(f"{rel}: {lines} lines (over {MAX_LINES}: one idea per file)")
        if "getenv(" in text and rel != "src/core/env.cpp":
            bad.append(f"{rel}: reads the environment (getenv): add the setting to src/core/env.cpp instead")
        me = tier_of(rel)
        for inc in INCLUDE_RE.findall(text):
            target = resolve(root, rel, inc)
            if target is None:
                if rel.startswith("kernels/"):
                    continue  # a third-party kernel header (FlashInfer, CUTLASS) on the include path
                bad.append(f"{rel}: includes \"{inc}\", which is not in the tree")
                continue
            other = tier_of(target)
            if other is None or me is None or other[0] == "public header":
                continue
            if me[0] == "kernels" and other[0] != "kernels":
                bad.append(f"{rel}: kernels include nothing from src/, but this includes {target}")
            elif other[0] == me[0]:
                # Same tier: the interface at its root, or the same implementation folder; only
                # the root's registry.cpp may reach into the implementations.
                if not (other[2] is None or other[2] == me[2]
                        or (me[2] is None and os.path.basename(rel) == "registry.cpp")):
                    where = f"{me[0]}/{me[2]}" if me[2] else f"{me[0]}'s interface"
                    bad.append(f"{rel} ({where}) includes {target}, the implementation {me[0]}/{other[2]}; "
                               f"only {me[0]}/registry.cpp may know the implementations")
            elif other[1] >= me[1]:
                kind = "a peer tier" if other[1] == me[1] else "a tier above"
                bad.append(f"{rel} ({me[0]}) includes {target} ({other[0]}): {kind}; includes point down only")
    for rel in tracked_files(root):
        if rel.endswith(("check_tiers.py",)) or not os.path.isfile(os.path.join(root, rel)):
            continue
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as fh:
                if "../shared" in fh.read():
                    bad.append(f"{rel}: refers to ../shared, which a clone does not have (use docs/DESIGN.md)")
        except (UnicodeDecodeError, OSError):
            pass
    return bad


def self_test(root):
    plants = {
        "src/core/planted_up.cpp": '#include "group/group.hpp"\n',                       # rule 1
        "src/backend/cpu/planted_sibling.cpp": '#include "backend/cuda/plan_cache.hpp"\n',  # rule 2
        "src/layers/planted_peer.cpp": '#include "loader/checkpoint.hpp"\n',               # rule 1 (peer)
        "kernels/planted.cu": '#include "core/error.hpp"\n',                               # rule 3
        "src/core/planted_long.cpp": "//\n" * (MAX_LINES + 1),                            # rule 4
        "src/group/planted_env.cpp": 'const char* v = getenv("X");\n',                   # rule 5
        "src/group/planted_missing.cpp": '#include "group/nothing.hpp"\n',                # unresolved
    }
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "repo")
        for top in ("src", "kernels", "include"):
            shutil.copytree(os.path.join(root, top), os.path.join(copy, top))
        if check(copy):
            print("self-test: the clean copy already has violations:\n  " + "\n  ".join(check(copy)))
            return 1
        for rel, text in plants.items():
            with open(os.path.join(copy, rel), "w") as fh:
                fh.write(text)
        with open(os.path.join(copy, "README.md"), "w") as fh:
            fh.write("see ../shared/DESIGN.md\n")  # rule 6 (no git here: every file counts)
        found = check(copy)
        missed = [rel for rel in list(plants) + ["README.md"] if not any(v.startswith(rel) for v in found)]
        if missed:
            print("self-test: planted violations not reported: " + ", ".join(missed))
            return 1
        print(f"self-test: all {len(plants) + 1} planted violations reported")
        return 0


def main():
    args = sys.argv[1:]
    if args and args[0] == "--self-test":
        root = args[1] if len(args) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        return self_test(os.path.abspath(root))
    root = os.path.abspath(args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    bad = check(root)
    for b in bad:
        print(b)
    n = sum(1 for _ in source_files(root))
    print(f"{n} files checked, {len(bad)} violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
