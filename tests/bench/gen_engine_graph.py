#!/usr/bin/env python3
"""Generate the engine benchmark's graph in three dialects (medflow YAML, dvc.yaml, Snakefile).

N stages in groups of 10: a group head fans in the 9 members of the previous group
and fans out to its own 9 members. Usage: gen_engine_graph.py N DIR
"""
import os
import sys

n = int(sys.argv[1])
d = sys.argv[2]
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, "src.txt"), "w") as f:
    f.write("source\n")


def deps(i):
    if i == 0:
        return []
    if i % 10 == 0:
        return [j for j in range(i - 9, i) if j < n and j % 10 != 0]
    return [(i // 10) * 10]


name = lambda i: "s%05d" % i
with open(os.path.join(d, "graph.yaml"), "w") as f:
    f.write("name: bench\nsources:\n  src: {path: src.txt}\nstages:\n")
    for i in range(n):
        ds = deps(i)
        if i == 0:
            f.write("  %s: {kind: copy-input, inputs: {in: src}}\n" % name(i))
        elif i % 10 == 0:
            f.write("  %s: {kind: sleep, inputs: {in: [%s]}, params: {seconds: 0, text: '%d'}}\n"
                    % (name(i), ", ".join(name(j) for j in ds), i))
        else:
            f.write("  %s: {kind: copy-input, inputs: {in: %s}, params: {tag: '%d'}}\n" % (name(i), name(ds[0]), i))
with open(os.path.join(d, "dvc.yaml"), "w") as f:
    f.write("stages:\n")
    for i in range(n):
        ins = ["src.txt"] if i == 0 else ["out/%s.txt" % name(j) for j in deps(i)]
        # like the medflow side, a trivial command whose output does not grow with its inputs
        f.write("  %s:\n    cmd: echo %d > out/%s.txt\n" % (name(i), i, name(i)))
        f.write("    deps:\n" + "".join("      - %s\n" % x for x in ins))
        f.write("    outs:\n      - out/%s.txt\n" % name(i))
# build.sh makes every output the dvc.yaml commands make, in order, so `dvc commit` can record
# them all at once (dvc repro of 1,000 stages takes close to an hour: seconds per stage).
with open(os.path.join(d, "build.sh"), "w") as f:
    f.write("set -e\nmkdir -p out\n")
    for i in range(n):
        ins = ["src.txt"] if i == 0 else ["out/%s.txt" % name(j) for j in deps(i)]
        f.write("echo %d > out/%s.txt\n" % (i, name(i)))
with open(os.path.join(d, "Snakefile"), "w") as f:
    f.write("N = %d\n" % n)
    f.write("def deps(i):\n    i = int(i)\n    if i == 0: return ['src.txt']\n"
            "    if i % 10 == 0: return ['out/s%05d.txt' % j for j in range(i - 9, i) if j < N and j % 10 != 0]\n"
            "    return ['out/s%05d.txt' % ((i // 10) * 10)]\n")
    f.write("rule all:\n    input: ['out/s%05d.txt' % i for i in range(N)]\n")
    f.write("rule node:\n    input: lambda wc: deps(wc.i)\n    output: 'out/s{i}.txt'\n"
            "    shell: 'echo {wildcards.i} > {output}'\n")
