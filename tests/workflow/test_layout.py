"""The package's layout, from its import graph (imports inside functions count too, since those run as well): no
module imports itself through others (an import circle); each stage's folder imports only what it may (data no
models, evaluation or plots; models no evaluation or plots; evaluation no models or plots; plots nothing that
trains or computes); a stage's ``__init__`` imports nothing; a small core at the top; no module over 700 lines."""

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


# ------------------------------------------------------------------------------------------ the stages' folders
STAGES = ("data", "models", "evaluation", "plots")
# what each stage may import besides the core modules at the top of the package (and itself)
MAY_IMPORT = {"data": set(), "models": {"data"}, "evaluation": {"data"}, "plots": set()}
# plots may read the names of the effects table (no computation), nothing else of evaluation
PLOTS_MAY_IMPORT = {"scmix.evaluation.effect_table"}
# the config's layer: a study's mixes (data.composition) and model settings (models.modelspec), read at DAG time
STUDY_MAY_IMPORT = {"scmix.data.composition", "scmix.models.modelspec"}
MAX_LINES = 700
MAX_TOP_MODULES = 12


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else "core"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that cross the stages' rules, as 'module -> module' lines."""
    out = []
    for module, targets in sorted(graph.items()):
        stage = stage_of(module)
        for target in sorted(targets):
            other = stage_of(target)
            if other in ("core", stage) or target in ("scmix", *(f"scmix.{s}" for s in STAGES)):
                continue  # a stage's __init__ imports nothing (checked below): naming it runs no other stage
            if stage == "core":
                ok = module == "scmix.study" and target in STUDY_MAY_IMPORT
            elif stage == "plots":
                ok = target in PLOTS_MAY_IMPORT
            else:
                ok = other in MAY_IMPORT[stage]
            if not ok:
                out.append(f"{module} -> {target}")
    return out


def test_layer_rules_are_checked():
    graph = {"scmix.data.mix": {"scmix.models.train", "scmix.io"}, "scmix.models.train": {"scmix.data.genes"},
             "scmix.plots.style": {"scmix.evaluation.metrics"}, "scmix.io": {"scmix.data.qc"},
             "scmix.evaluation.metrics": {"scmix.models.trained"}}  # fmt: skip
    assert layer_violations(graph) == [
        "scmix.data.mix -> scmix.models.train",
        "scmix.evaluation.metrics -> scmix.models.trained",
        "scmix.io -> scmix.data.qc",
        "scmix.plots.style -> scmix.evaluation.metrics",
    ]


def test_each_stage_imports_only_what_it_may():
    """data imports no models, evaluation or plots; models no evaluation or plots; evaluation no models or plots;
    plots nothing that trains or computes; the core modules no stage (the study's config layer reads the mix sweeps
    and the model settings). Imports inside functions count."""
    graph = module_graph()
    assert {stage_of(m) for m in graph} == {"core", *STAGES}
    assert layer_violations(graph) == []


def test_the_stages_folders_import_nothing_and_the_core_is_small():
    """A stage's ``__init__`` imports no package module (the workflow imports data.composition, data.fetch and
    models.modelspec while it builds the DAG, and a rule depends on the modules its script imports, not on a whole
    folder); at most a dozen modules at the top; no module over 700 lines."""
    graph = module_graph()
    for stage in STAGES:
        assert graph[f"scmix.{stage}"] == set(), stage
    top = sorted((ROOT / "scmix").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, [p.name for p in top]
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "scmix").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert long == {}
