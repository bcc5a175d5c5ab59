"""The package's import graph: no module imports itself through others (an import circle), counting imports
made inside functions too, since those run as well."""

from pathlib import Path

from scmix import deps

ROOT = Path(__file__).resolve().parents[2]


def module_graph() -> dict[str, set[str]]:
    """Each package module's name -> the package modules its import statements name (a ``from m import f``
    of a function ``f`` names ``m``). Importing ``a.b`` also runs ``a/__init__``; those implicit edges are left
    out, as Python's import system resolves them without a circle."""
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / deps.PACKAGE).rglob("*.py")
    }
    graph = {}
    for name, path in files.items():
        targets = set()
        for imported in deps.imported_modules(path):
            parts = imported.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_circles_are_found():
    # the check itself: a planted circle is reported, a chain is not
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circles():
    graph = module_graph()
    assert len(graph) > 30 and "scmix.models.trained" in graph["scmix.models.scvi_models"]  # the graph is the package's
    assert circles(graph) == []
