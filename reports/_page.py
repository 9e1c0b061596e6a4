"""The report's page chrome: the Jinja2 environment of its templates, the figures block of a page, and the
assets (style sheet, script, plotly.js) copied beside the pages so that they open offline."""

import shutil
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from plotly.io.json import to_json_plotly

_HERE = Path(__file__).parent

_ENV = Environment(
    loader=FileSystemLoader(_HERE / "templates"), autoescape=True, undefined=StrictUndefined,
    trim_blocks=True, lstrip_blocks=True,
)  # fmt: skip


class _Figures:
    """Collects a page's figures; each gets a div id and goes into the page's JSON block."""

    def __init__(self) -> None:
        self.specs: dict[str, Any] = {}

    def add(self, name: str, fig: go.Figure | None) -> str | None:
        if fig is None:
            return None
        div = f"chart-{name}"
        spec = fig.to_plotly_json()
        spec["layout"].pop("template", None)
        self.specs[div] = {"data": spec["data"], "layout": spec["layout"]}
        return div

    def json(self) -> Markup:
        # to_json_plotly escapes < > & as \u003c..., so the block cannot close the <script> element
        text = to_json_plotly(self.specs).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        return Markup(text)


def _copy_assets(out_dir: Path) -> None:
    assets = out_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for name in ("style.css", "report.js"):
        shutil.copyfile(_HERE / "static" / name, assets / name)
    src = Path(go.__file__).parent.parent / "package_data" / "plotly.min.js"
    dst = assets / "plotly.min.js"
    if not src.is_file():
        from plotly.offline import get_plotlyjs

        dst.write_text(get_plotlyjs(), encoding="utf-8")
    elif not dst.is_file() or dst.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dst)
