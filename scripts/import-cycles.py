#!/usr/bin/env python3
"""Finds import circles between the modules of each host crate.

A module's imports (`crate::…`, `super::…`) are resolved to the module they name. Imports of a
module's own ancestors or descendants are part of Rust's module tree and are not counted;
every other edge must keep the graph acyclic. Prints each circle and exits 1 if there is one.

Usage: scripts/import-cycles.py [CRATE_SRC_DIR ...]   (default: every host crate)
"""
import re
import sys
from pathlib import Path

REF = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")


def module_path(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts.pop()
    return tuple(parts)


def references(text: str):
    """Yields (kind, segments, in_test) for each path reference outside comments."""
    in_test = False
    for line in text.splitlines():
        code = line.split("//", 1)[0]
        if re.match(r"\s*(pub(\(crate\))?\s+)?mod tests\b", code):
            in_test = True
        for m in REF.finditer(code):
            yield m.group(1), m.group(2).strip(":").split("::"), in_test


def resolve(modules: set, base: tuple, segments: list) -> tuple:
    """The longest module named by base + segments."""
    best = base
    for i in range(1, len(segments) + 1):
        cand = base + tuple(segments[:i])
        if cand in modules:
            best = cand
        else:
            break
    return best


def related(a: tuple, b: tuple) -> bool:
    return a[: len(b)] == b or b[: len(a)] == a


def cycles(src: Path) -> list:
    files = {module_path(src, f): f for f in src.rglob("*.rs")}
    modules = set(files)
    edges = {m: set() for m in modules}
    for m, f in files.items():
        for kind, segs, in_test in references(f.read_text()):
            if kind == "crate":
                t = resolve(modules, (), segs)
            else:
                # In a file's test module, `super` is the file's own module.
                n = 1
                while segs and segs[0] == "super":
                    segs = segs[1:]
                    n += 1
                depth = n - 1 if in_test else n
                base = m[: max(len(m) - depth, 0)]
                t = resolve(modules, base, segs)
            if not related(m, t):
                edges[m].add(t)
    # Tarjan's strongly connected components.
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted("::".join(c) or "(root)" for c in comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    dirs = [Path(a) for a in sys.argv[1:]] or sorted(p.parent for p in (root / "host").glob("*/src/lib.rs")) + [root / "host/src"]
    bad = 0
    for src in dirs:
        for comp in cycles(src):
            bad += 1
            print(f"{src.relative_to(root) if src.is_relative_to(root) else src}: import circle: {' <-> '.join(comp)}")
    if not bad:
        print(f"no import circles in {len(dirs)} crates")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
