#!/usr/bin/env python3
"""make check-layout: every #include "X" in the product's sources must be allowed by the
"May include" paragraph of the README.md that governs the including file.

The governing README is the nearest one at or above the file's folder whose text has a paragraph
starting with "May include" (bold or not). The allowed list is every `backticked` path in that
paragraph before the word "Nothing" (so "Nothing of `x/`" lists what is forbidden, for readers):
a path ending in "/" allows that folder and everything under it; any other path allows that one
header. A file may always include headers of its own folder. Includes that are not files of the
repository (system and library headers) are not checked; tests/ may include anything.

Exit 0 when everything is allowed, 1 with one "FILE:LINE: includes X, which DIR/README.md does
not allow" line per violation otherwise.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("common", "artifacts", "kernels", "tokenizer", "modelio", "stages", "engine")
EXTS = (".c", ".h", ".cu", ".cuh")


def rule_of(readme):
    try:
        text = open(readme, encoding="utf-8").read()
    except OSError:
        return None
    for para in re.split(r"\n\s*\n", text):
        m = re.search(r"(\*\*)?May include\b", para)
        if not m:
            continue
        body = para[m.start():]
        cut = body.find("Nothing")
        if cut >= 0:
            body = body[:cut]
        return re.findall(r"`([A-Za-z0-9_./-]+)`", body)
    return None


def governing(rel_dir, cache):
    d = rel_dir
    while True:
        if d not in cache:
            cache[d] = rule_of(os.path.join(ROOT, d, "README.md"))
        if cache[d] is not None:
            return d, cache[d]
        if not d:
            return None, None
        d = os.path.dirname(d)


def main():
    cache, bad, checked = {}, [], 0
    for top in SOURCES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in sorted(files):
                if not name.endswith(EXTS):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)
                rdir, allowed = governing(os.path.dirname(rel), cache)
                if rdir is None:
                    bad.append(f"{rel}: no README.md with a 'May include' paragraph governs this file")
                    continue
                for ln, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
                    m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                    if not m:
                        continue
                    inc = m.group(1)
                    if not os.path.isfile(os.path.join(ROOT, inc)):
                        continue  # a library or same-directory header, not a module of ours
                    checked += 1
                    if os.path.dirname(inc) == rdir or os.path.dirname(inc) == os.path.dirname(rel):
                        continue
                    if any(inc == a or (a.endswith("/") and inc.startswith(a)) for a in allowed):
                        continue
                    bad.append(f"{rel}:{ln}: includes {inc}, which {rdir}/README.md does not allow")
    for b in bad:
        print(b)
    print(f"check-layout: {checked} includes checked, {len(bad)} not allowed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
