"""The package layout: facegen's layers only import downwards, no import cycles, no core module imports the
app services or Gradio, and the README's architecture tree names every module there is.

Layers, bottom to top: engine < labels < packs < features < world < studio / cli. A module may import
its own layer and the layers below; imports inside functions count too (they are still dependencies).
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "facegen"
LAYERS = ["engine", "labels", "packs", "features", "world", "top"]   # top: studio.py, __main__.py, __init__.py


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS[:-1] else "top"


def modules() -> dict:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(path: Path, mod: str) -> set:
    """Every facegen module `mod` imports (absolute or relative, at any depth of the file)."""
    tree = ast.parse(path.read_text())
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] in ("facegen", "gradio")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] not in ("facegen", "gradio"):
                continue
            out.add(target)
            for a in node.names:   # `from facegen.x import module` imports facegen.x.module
                out.add(f"{target}.{a.name}")
    return out


def graph() -> dict:
    mods = modules()
    g = {}
    for m, p in mods.items():
        deps = set()
        for t in imports_of(p, m):
            if t.startswith("gradio"):
                deps.add("gradio")
                continue
            while t and t not in mods:   # facegen.x.Name -> facegen.x
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != m:
                deps.add(t)
        g[m] = deps
    return g


def test_no_core_module_imports_gradio_or_the_app():
    bad = {m: sorted(d & {"gradio", "facegen.studio"}) for m, d in graph().items()
           if m != "facegen.studio" and layer_of(m) != "top" and d & {"gradio", "facegen.studio"}}
    bad.update({m: ["gradio"] for m, d in graph().items() if "gradio" in d})
    assert not bad, f"core modules importing Gradio or the app services: {bad}"


def test_layers_only_import_downwards():
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for m, deps in graph().items():
        for d in deps:
            if d == "gradio":
                continue
            if rank[layer_of(d)] > rank[layer_of(m)]:
                bad.append(f"{m} ({layer_of(m)}) imports {d} ({layer_of(d)})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    g = {m: {d for d in deps if d != "gradio"} for m, deps in graph().items()}
    # package __init__ re-exports are edges too; a cycle is a strongly connected component of size > 1
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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
                sccs.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    assert not sccs, f"import cycles: {sccs}"


def test_readme_architecture_tree_matches_the_code():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Architecture.*?```(?:text)?\n(.*?)```", text, re.S)
    assert m, "README.md has no '## Architecture' section with a tree in a code block"
    tree = m.group(1)
    listed, stack = set(), []
    for line in tree.splitlines():
        mm = re.match(r"^(\s*)([\w./-]+)", line)
        if not mm or not mm.group(2).strip():
            continue
        depth, name = len(mm.group(1)) // 2, mm.group(2)
        stack = stack[:depth] + [name.rstrip("/")]
        if name.endswith(".py"):
            listed.add("/".join(stack))
    listed = {m for m in listed if m.startswith("facegen/")}
    real = {str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if p.name != "__init__.py"}
    assert real - listed == set(), f"modules missing from the README tree: {sorted(real - listed)}"
    assert listed - real == set(), f"README tree names modules that do not exist: {sorted(listed - real)}"
