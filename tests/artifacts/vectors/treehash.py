#!/usr/bin/env python3
"""Independent implementation of medflow's tree digest v1 (artifacts/README.md).

    D = SHA256( b"medflow-tree-v1\\n"
                || for each regular file, sorted by path bytes:
                     u32be(len(path)) || path || u8(exec) || u64be(size) || SHA256(bytes) )

Usage:
    treehash.py DIR                  print the digest of a directory
    treehash.py --check vectors.json recompute every vector, exit 1 on a mismatch
    treehash.py --write vectors.json recompute and store the expected digests

A vector is {"name", "files": [{"path", "exec", "text" | "repeat": [text, n]}], "digest"}.
Uses only the Python standard library (hashlib, struct); written for Python 3.8+.
"""
import hashlib
import json
import os
import struct
import sys

MAGIC = b"medflow-tree-v1\n"


def tree_digest(entries):
    """entries: iterable of (path_bytes, exec_bool, content_bytes)."""
    h = hashlib.sha256(MAGIC)
    for path, ex, data in sorted(entries, key=lambda e: e[0]):
        h.update(struct.pack(">I", len(path)))
        h.update(path)
        h.update(struct.pack(">BQ", 1 if ex else 0, len(data)))
        h.update(hashlib.sha256(data).digest())
    return "sha256:" + h.hexdigest()


def vector_entries(v):
    for f in v["files"]:
        data = f["text"] if "text" in f else f["repeat"][0] * f["repeat"][1]
        yield f["path"].encode("utf-8"), bool(f.get("exec")), data.encode("utf-8")


def dir_entries(root):
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as fh:
                data = fh.read()
            yield os.fsencode(rel), bool(os.stat(full).st_mode & 0o100), data


def main(argv):
    if len(argv) == 2 and argv[0] in ("--check", "--write"):
        with open(argv[1], encoding="utf-8") as fh:
            vectors = json.load(fh)
        bad = 0
        for v in vectors:
            d = tree_digest(list(vector_entries(v)))
            if argv[0] == "--write":
                v["digest"] = d
            elif v.get("digest") != d:
                print(f"{v['name']}: expected {v.get('digest')}, computed {d}")
                bad += 1
        if argv[0] == "--write":
            with open(argv[1], "w", encoding="utf-8") as fh:
                json.dump(vectors, fh, indent=2, ensure_ascii=False)
                fh.write("\n")
        else:
            print(f"{len(vectors) - bad} of {len(vectors)} vectors match")
        return 1 if bad else 0
    if len(argv) == 1:
        print(tree_digest(list(dir_entries(argv[0]))))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
