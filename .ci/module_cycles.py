#!/usr/bin/env python3
"""Fail when the modules of a crate import each other in a cycle.

A module is a file (`src/a/b.rs` or `src/a/b/mod.rs` is `a::b`). A reference from A to B
is a non-test line of A that names a path under B (`crate::b::…`, `super::…`, `self::…`,
`child::…`, grouped `use` trees included). Test code (`tests.rs` files and everything
from `#[cfg(test)]` on) is not counted: tests may look anywhere.

The rule is layering at every level of the tree: for each module, its direct children
(each standing for its whole subtree) must reference each other without a cycle. So the
top-level modules form a DAG, the files of `gateway/` form a DAG, and so on. A parent
and its own children may name each other (a `mod.rs` re-exporting a child's type while
the child uses the parent's shared types is a tree, not a knot).

Usage: module_cycles.py CRATE_SRC_DIR…   (exit status 1 when any cycle exists)
"""
import os
import re
import sys


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    return tuple(rel)


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    m = re.search(r"#\[cfg\(test\)\]", text)
    return text[: m.start()] if m else text


def expand(text, i):
    """Parse a path tree starting at text[i]; return (list of segment lists, end)."""
    paths, seg, cur = [], "", []
    while i < len(text):
        c = text[i]
        if c.isalnum() or c == "_":
            seg += c
        elif text.startswith("::", i):
            if seg:
                cur.append(seg)
            seg = ""
            i += 2
            if i < len(text) and text[i] == "{":
                subs, i = group(text, i + 1)
                paths.extend(cur + s for s in subs)
                return paths, i
            continue
        else:
            break
        i += 1
    if seg:
        cur.append(seg)
    paths.append(cur)
    return paths, i


def group(text, i):
    out = []
    while i < len(text):
        while i < len(text) and text[i] in " \n\t\r,":
            i += 1
        if i < len(text) and text[i] == "}":
            return out, i + 1
        subs, j = expand(text, i)
        out.extend(subs)
        if j == i:
            j += 1
        i = j
    return out, i


def edges_for(src, path, modules):
    me = module_of(src, path)
    text = strip(open(path, encoding="utf-8").read())
    deps = set()
    for m in re.finditer(r"\b(crate|super|self)::", text):
        kind = m.group(1)
        if m.start() > 0 and text[m.start() - 1] == ":":
            continue
        paths, _ = expand(text, m.end())
        # a file module `a/b.rs` is `a::b`; `self` inside it is `a::b`
        base = {"crate": (), "self": me, "super": me[:-1]}[kind]
        for p in paths:
            full = base + tuple(x for x in p if x not in ("self",))
            while full and full not in modules:
                full = full[:-1]
            target = full
            if target != me and target is not None:
                # a child naming its parent's own items, or a parent naming a child
                deps.add(target)
    children = {m[-1] for m in modules if len(m) == len(me) + 1 and m[: len(me)] == me}
    for name in children:
        if re.search(r"(?<![:\w])" + re.escape(name) + r"::", text):
            deps.add(me + (name,))
    deps.discard(me)
    return me, deps


def find_cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main(dirs):
    failed = False
    for src in dirs:
        files = []
        for root, _, names in os.walk(src):
            files += [os.path.join(root, n) for n in names if n.endswith(".rs") and n != "tests.rs"]
        modules = {module_of(src, f) for f in files}
        refs = {}
        for f in files:
            me, deps = edges_for(src, f, modules)
            refs.setdefault(me, set()).update(deps)
        for parent in sorted(modules):
            depth = len(parent) + 1
            graph, why = {}, {}
            for a, deps in refs.items():
                if len(a) < depth or a[: len(parent)] != parent:
                    continue
                for b in deps:
                    if len(b) < depth or b[: len(parent)] != parent or a[:depth] == b[:depth]:
                        continue
                    graph.setdefault(a[:depth], set()).add(b[:depth])
                    why.setdefault((a[:depth], b[:depth]), (a, b))
            for comp in find_cycles(graph):
                failed = True
                names = sorted("::".join(c) for c in comp)
                print(f"{src}: import cycle between modules: {', '.join(names)}")
                members = set(comp)
                for a in sorted(members):
                    for b in sorted(graph.get(a, set()) & members):
                        x, y = why[(a, b)]
                        print(f"    {'::'.join(a)} -> {'::'.join(b)}  ({'::'.join(x)} names {'::'.join(y)})")
    if failed:
        print("Break each cycle: move the shared item down into a module both can import.")
        return 1
    print(f"no import cycles in {', '.join(dirs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["src"]))
