#!/usr/bin/env python3
"""Generate the engine benchmark's graph in three dialects (medflow YAML, dvc.yaml, Snakefile).

Usage: gen_engine_graph.py N DIR [fan|chains]

fan (default): N stages in groups of 10: a group head fans in the 9 members of the previous
  group and fans out to its own 9 members. One source file (src.txt), read by stage 0.
chains: N stages (a multiple of 100) in groups of 100: 9 chains of 11 stages, each starting
  from its own source file (src/gGcC.txt), and one fan-in stage that joins the 9 chain tails
  and the previous group's fan-in (so the fan-ins form a chain of N / 100 across the graph).
  N * 9 / 100 sources. A fan-in writes only its own text, so a changed chain stops there in
  medflow (early cut-off); the benchmark changes a source of the last group, where both tools
  rerun the same 12 stages.

Also writes build.sh, which makes every output the peers' commands make, in order (their
"everything up to date" state without running their schedulers), and, for chains,
change.sh K, which changes the last group's first source (content "changed K").
"""
import os
import sys

n = int(sys.argv[1])
d = sys.argv[2]
shape = sys.argv[3] if len(sys.argv) > 3 else "fan"
if shape not in ("fan", "chains"):
    sys.exit("shape must be fan or chains")
if shape == "chains" and n % 100:
    sys.exit("chains: N must be a multiple of 100")
os.makedirs(d, exist_ok=True)
name = lambda i: "s%05d" % i


def fan_deps(i):
    if i == 0:
        return []
    if i % 10 == 0:
        return [j for j in range(i - 9, i) if j < n and j % 10 != 0]
    return [(i // 10) * 10]


def chain_parts(i):
    """(stage deps, source names) of stage i in the chains shape."""
    g, j = divmod(i, 100)
    if j == 99:
        return [g * 100 + 11 * c + 10 for c in range(9)] + ([g * 100 - 1] if g else []), []
    c, p = divmod(j, 11)
    if p == 0:
        return [], ["g%dc%d" % (g, c)]
    return [i - 1], []


def write_medflow():
    with open(os.path.join(d, "graph.yaml"), "w") as f:
        f.write("name: bench\nsources:\n")
        if shape == "fan":
            f.write("  src: {path: src.txt}\n")
        else:
            os.makedirs(os.path.join(d, "src"), exist_ok=True)
            for g in range(n // 100):
                for c in range(9):
                    s = "g%dc%d" % (g, c)
                    with open(os.path.join(d, "src", s + ".txt"), "w") as sf:
                        sf.write("source %s\n" % s)
                    f.write("  %s: {path: src/%s.txt}\n" % (s, s))
        f.write("stages:\n")
        for i in range(n):
            if shape == "fan":
                ds = fan_deps(i)
                if i == 0:
                    f.write("  %s: {kind: copy-input, inputs: {in: src}}\n" % name(i))
                elif i % 10 == 0:
                    f.write("  %s: {kind: sleep, inputs: {in: [%s]}, params: {seconds: 0, text: '%d'}}\n"
                            % (name(i), ", ".join(name(j) for j in ds), i))
                else:
                    f.write("  %s: {kind: copy-input, inputs: {in: %s}, params: {tag: '%d'}}\n"
                            % (name(i), name(ds[0]), i))
                continue
            ds, srcs = chain_parts(i)
            ins = srcs + [name(j) for j in ds]
            if i % 100 == 99:
                f.write("  %s: {kind: sleep, inputs: {in: [%s]}, params: {seconds: 0, text: '%d'}}\n"
                        % (name(i), ", ".join(ins), i))
            else:
                f.write("  %s: {kind: copy-input, inputs: {in: [%s]}, params: {tag: '%d'}}\n"
                        % (name(i), ", ".join(ins), i))


def peer_inputs(i):
    if shape == "fan":
        return ["src.txt"] if i == 0 else ["out/%s.txt" % name(j) for j in fan_deps(i)]
    ds, srcs = chain_parts(i)
    return ["src/%s.txt" % s for s in srcs] + ["out/%s.txt" % name(j) for j in ds]


def write_peers():
    if shape == "fan":
        with open(os.path.join(d, "src.txt"), "w") as f:
            f.write("source\n")
    with open(os.path.join(d, "dvc.yaml"), "w") as f:
        f.write("stages:\n")
        for i in range(n):
            # like the medflow side, a trivial command whose output does not grow with its inputs
            f.write("  %s:\n    cmd: echo %d > out/%s.txt\n" % (name(i), i, name(i)))
            f.write("    deps:\n" + "".join("      - %s\n" % x for x in peer_inputs(i)))
            f.write("    outs:\n      - out/%s.txt\n" % name(i))
    # build.sh makes every output the peers' commands make, in order, so `dvc commit` can record
    # them all at once (dvc repro of 1,000 stages takes close to an hour: seconds per stage).
    with open(os.path.join(d, "build.sh"), "w") as f:
        f.write("set -e\nmkdir -p out\n")
        for i in range(n):
            f.write("echo %d > out/%s.txt\n" % (i, name(i)))
    with open(os.path.join(d, "Snakefile"), "w") as f:
        f.write("N = %d\n" % n)
        if shape == "fan":
            f.write("def deps(i):\n    i = int(i)\n    if i == 0: return ['src.txt']\n"
                    "    if i % 10 == 0: return ['out/s%05d.txt' % j for j in range(i - 9, i) if j < N and j % 10 != 0]\n"
                    "    return ['out/s%05d.txt' % ((i // 10) * 10)]\n")
        else:
            f.write("def deps(i):\n    g, j = divmod(int(i), 100)\n"
                    "    if j == 99: return ['out/s%05d.txt' % (g * 100 + 11 * c + 10) for c in range(9)]"
                    " + (['out/s%05d.txt' % (g * 100 - 1)] if g else [])\n"
                    "    c, p = divmod(j, 11)\n"
                    "    if p == 0: return ['src/g%dc%d.txt' % (g, c)]\n"
                    "    return ['out/s%05d.txt' % (int(i) - 1)]\n")
        f.write("rule all:\n    input: ['out/s%05d.txt' % i for i in range(N)]\n")
        f.write("rule node:\n    input: lambda wc: deps(wc.i)\n    output: 'out/s{i}.txt'\n"
                "    shell: 'echo {wildcards.i} > {output}'\n")
    if shape == "chains":
        with open(os.path.join(d, "change.sh"), "w") as f:
            f.write("echo \"changed $1\" > src/g%dc0.txt\n" % (n // 100 - 1))


write_medflow()
write_peers()
