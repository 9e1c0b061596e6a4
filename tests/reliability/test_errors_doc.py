"""docs/ERRORS.md documents every error message segflow can raise for bad input or configuration."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("segmentation", "embeddings", "reports", "flows")
ERRORS = {"SegflowError", "DataError", "SchemaError", "ConfigError"}
HOLE = "{…}"


def _template(node: ast.expr) -> str:
    """The message with every run-time part replaced by ``{…}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _template(node.left) + _template(node.right)
    return HOLE


def raised_messages() -> list[tuple[str, str, str]]:
    """(``path:function``, error class, message template) of every ``raise <SegflowError>(...)``."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            where = {}
            for fn in ast.walk(tree):
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for n in ast.walk(fn):
                        where[id(n)] = fn.name  # innermost function wins (walked later)
            for n in ast.walk(tree):
                if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call):
                    name = getattr(n.exc.func, "id", None) or getattr(n.exc.func, "attr", None)
                    if name in ERRORS:
                        msg = _template(n.exc.args[0]) if n.exc.args else ""
                        out.append((f"{path.relative_to(ROOT)}:{where.get(id(n), '<module>')}", name, msg))
    return out


def _normalise(text: str) -> str:
    text = re.sub(r"\{[^{}\n]*\}", HOLE, text)  # {path}, {n}, {…} alike
    return re.sub(r"\s+", " ", text)


def _literal(template: str) -> str:
    return re.sub(r"[\W_]+", "", template.replace(HOLE, ""))


def test_every_error_message_is_documented():
    doc = _normalise((ROOT / "docs" / "ERRORS.md").read_text(encoding="utf-8"))
    missing = []
    for where, cls, template in raised_messages():
        if len(_literal(template)) < 12:  # built elsewhere (a helper's text): documented by its place
            found = where in doc
        else:
            found = _normalise(template) in doc
        if not found:
            missing.append((where, cls, template))
    stubs = "\n\n".join(
        f"#### `{t}`\n({w}, {c}) Cause: ... Fix: ..." if len(_literal(t)) >= 12 else f"#### `{w}` ({c})\nCause: ... Fix: ..."
        for w, c, t in missing
    )  # fmt: skip
    assert not missing, f"{len(missing)} error messages are not in docs/ERRORS.md; add them:\n\n{stubs}"


def test_the_scan_finds_the_known_messages():
    found = {t for _, _, t in raised_messages()}
    assert len(found) > 50
    assert "{…} file {…} does not exist" in found
    assert "encoder.model {…}: no such file or folder" in found
    assert any(w.endswith("config/files.py:_validate") for w, _, _ in raised_messages())
