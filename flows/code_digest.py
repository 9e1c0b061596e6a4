"""Which library code a flow stage depends on, hashed: a fix in one stage leaves the other stages' caches valid.

A stage's cache key carries :func:`stage_digest` of its function: the source of the function and of the
helpers it calls in its own module, the module-level constants it reads, and the files of its own module and
of every library module it references (imports inside the function, or names imported at the module's top)
together with everything those modules import, found from their ASTs (lazy imports inside functions
included). A fix in ``segmentation/evaluate.py`` therefore invalidates ``evaluate`` and not the hour of
embedding, segmenting and ranking before it, so a rerun after the fix resumes. A function whose source cannot be read (defined at run
time, or outside the library) falls back to the hash of the whole library.
"""

import ast
import hashlib
import threading
from functools import lru_cache
from pathlib import Path

__all__ = ["LIBRARY_PACKAGES", "library_digest", "module_graph", "stage_digest"]

LIBRARY_PACKAGES = ("segmentation", "embeddings")

# Stages' cache keys are computed in the task runner's threads at once; CPython 3.11's ast.parse is not safe to run
# from several threads together ("SystemError: AST constructor recursion depth mismatch", seen in a 100k-user run,
# after which Prefect did not persist that stage's result), so one thread at a time builds and hashes the ASTs.
_AST_LOCK = threading.Lock()


def _root() -> Path:
    import segmentation

    return Path(segmentation.__file__).resolve().parent.parent


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for pkg in LIBRARY_PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imported(node: ast.AST, mods: dict[str, Path]) -> set[str]:
    """Library modules named by the import statements anywhere under ``node``."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.update(c for c in [n.module, *(f"{n.module}.{a.name}" for a in n.names)] if c in mods)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names if a.name in mods)
    return out


def module_graph(root: Path | None = None) -> dict[str, set[str]]:
    """Library module -> the library modules it imports (at the top or inside functions)."""
    mods = _modules(root or _root())
    return {m: _imported(ast.parse(p.read_bytes()), mods) for m, p in mods.items()}


def _closure(graph: dict[str, set[str]], starts: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        m = todo.pop()
        if m not in seen and m in graph:
            seen.add(m)
            todo.extend(graph[m])
    return seen


@lru_cache(maxsize=1)
def library_digest() -> str:
    """Hash of every library source file (the fallback, and the key of code that is not a stage function)."""
    root = _root()
    h = hashlib.sha256()
    for name, path in sorted(_modules(root).items()):
        h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def stage_digest(fn, root: Path | None = None) -> str:
    """Hash of the library code ``fn`` (a stage function of a library module) can run.

    Args:
        fn: the stage's function, e.g. ``segmentation.rank.rank_test_users``.
        root: the folder holding the library packages (default: where ``segmentation`` is imported from).
    """
    root = root or _root()
    mods = _modules(root)
    name = getattr(fn, "__module__", None)
    if name not in mods or not hasattr(fn, "__name__"):
        return library_digest()
    stamp = tuple(sorted((m, p.stat().st_mtime_ns) for m, p in mods.items()))
    with _AST_LOCK:
        return _stage_digest(name, fn.__name__, root, stamp)


@lru_cache(maxsize=4)
def _graph(root: Path, _stamp: tuple) -> dict[str, set[str]]:
    return module_graph(root)


@lru_cache(maxsize=128)
def _stage_digest(module: str, func: str, root: Path, _stamp: tuple) -> str:
    mods = _modules(root)
    tree = ast.parse(mods[module].read_bytes())
    top: dict[str, ast.stmt] = {}  # top-level definitions and assignments by name
    imported_names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            top[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    top[t.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                imported_names.setdefault(a.asname or a.name.split(".")[0], set()).update(_imported(node, mods))
    if func not in top:
        return library_digest()
    used_nodes: list[ast.stmt] = []
    modules: set[str] = {module}  # the stage's own module whole, as for every module it imports
    todo, seen = [func], set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        node = top[n]
        used_nodes.append(node)
        modules |= _imported(node, mods)
        for ref in {x.id for x in ast.walk(node) if isinstance(x, ast.Name)}:
            if ref in top and ref not in seen:
                todo.append(ref)
            modules |= imported_names.get(ref, set())
    graph = _graph(root, _stamp)
    h = hashlib.sha256()
    for node in sorted(used_nodes, key=lambda x: x.lineno):
        h.update(ast.unparse(node).encode() + b"\0")
    for m in sorted(_closure(graph, modules)):
        h.update(m.encode() + b"\0" + mods[m].read_bytes())
    return h.hexdigest()[:16]
