#!/usr/bin/env python3
"""Reads compute-sanitizer memcheck output and fails on what is ours to fix.

NCCL probes each kernel image at init (ncclInitKernelsForDevice) and gets
cudaErrorNoKernelImageForDevice for architectures it was not built for; memcheck
reports each probe as an API error. Those reports (an API error whose host
backtrace is inside libnccl) are counted apart; every other report (memory
errors, leaks, races, API errors from libtppp or the tests) fails.
  compute-sanitizer ... 2>&1 | tee log; python3 scripts/memcheck_filter.py log
  python3 scripts/memcheck_filter.py --self-test
"""
import re
import sys

PREFIX = "========= "
SUMMARY = re.compile(r"^(ERROR SUMMARY|LEAK SUMMARY|COMPUTE-SANITIZER|Target application returned)")


def blocks(text):
    """Each report: its first line and the indented lines that follow it."""
    out = []
    for line in text.splitlines():
        if not line.startswith("========="):
            continue
        body = line[len(PREFIX):] if line.startswith(PREFIX) else ""
        if body and not body.startswith(" "):
            out.append([body])
        elif out and body:
            out[-1].append(body.strip())
    return out


def classify(text):
    """Returns (ours, nccl_probes): the reports that fail and those ignored."""
    ours, probes = [], []
    for b in blocks(text):
        head = b[0]
        if SUMMARY.match(head):
            continue
        api_error = head.startswith("Program hit ") and "CUDA API call" in head
        if api_error and any("libnccl" in l for l in b[1:]):
            probes.append(b)
        else:
            ours.append(b)
    return ours, probes


SAMPLE_OK = """========= COMPUTE-SANITIZER
========= Program hit cudaErrorNoKernelImageForDevice (error 209) due to "no kernel image is available for execution on the device" on CUDA API call to cudaFuncGetAttributes.
=========     Saved host backtrace up to driver entry point at error
=========         Host Frame: ncclInitKernelsForDevice [0x1234] in libnccl.so.2
=========
[doctest] test cases: 7 | 7 passed
========= ERROR SUMMARY: 1 error
"""
SAMPLE_BAD = SAMPLE_OK + """========= Invalid __global__ write of size 4 bytes
=========     at rmsnorm+0x90
=========     by thread (0,0,0) in block (0,0,0)
========= Program hit cudaErrorInvalidValue (error 1) on CUDA API call to cudaMemcpyAsync.
=========         Host Frame: tppp::CudaBackend::copy in libtppp.so.0
========= Leaked 1024 bytes at 0x7f0000000000
=========     Saved host backtrace up to driver entry point at cudaMalloc time
"""


def self_test():
    ours, probes = classify(SAMPLE_OK)
    assert (len(ours), len(probes)) == (0, 1), (ours, probes)
    ours, probes = classify(SAMPLE_BAD)
    assert (len(ours), len(probes)) == (3, 1), (ours, probes)
    print("memcheck_filter self-test: ok")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 2:
        print(__doc__)
        return 2
    text = open(argv[1], errors="replace").read()
    if "ERROR SUMMARY" not in text:
        print("memcheck: no ERROR SUMMARY in %s (did compute-sanitizer run to the end?)" % argv[1])
        return 1
    ours, probes = classify(text)
    print("memcheck: %d report(s) to fix, %d NCCL init probe(s) ignored" % (len(ours), len(probes)))
    for b in ours[:20]:
        print("  " + "\n    ".join(b[:6]))
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
