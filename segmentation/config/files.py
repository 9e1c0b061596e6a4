"""Loading, overriding, dumping and hashing a configuration; the reference table (docs/CONFIG.md)."""

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from segmentation._config_legacy import (
    CONVERTED_PREDICTOR_KEYS,
    LEGACY_PREDICTOR_KEYS,
    REMOVED_PREDICTOR_KEYS,
    migrate_predictor_keys,
    override_paths,
)
from segmentation._errors import ConfigError
from segmentation.config._base import allows_none
from segmentation.config.run import PipelineConfig


def config_hash(section: BaseModel | dict[str, Any], *parts: object) -> str:
    """A short stable hash of a config section (plus any extra parts), for cache keys."""
    payload = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    blob = json.dumps([payload, [str(p) for p in parts]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _format_validation_error(err: ValidationError, where: str) -> str:
    lines = [f"invalid configuration in {where}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {loc}: unknown key (check the spelling; see docs/CONFIG.md for the valid keys)")
        else:
            given = e.get("input")
            shown = "" if isinstance(given, dict) else f" (given: {given!r})"
            lines.append(f"  - {loc}: {e['msg']}{shown}")
    return "\n".join(lines)


def _validate(raw: dict[str, Any], where: str) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, where)) from None


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load a :class:`PipelineConfig` from a TOML file and apply ``key=value`` overrides.

    Args:
        path: a TOML file, or None for the defaults.
        overrides: dotted assignments such as ``cluster.min_cluster_size=20``; values
            parse as TOML literals where they can (numbers, booleans, lists), else as strings.

    Raises:
        ConfigError: the file is missing or unreadable, or a key or value is invalid.
    """
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist or is not a file")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"configuration file {path} is not valid TOML: {err}") from None
        if isinstance(raw.get("predictor"), dict):  # before the overrides, so that a --set of a new key wins
            try:
                raw["predictor"] = migrate_predictor_keys(raw["predictor"], where)
            except ValueError as err:
                raise ConfigError(f"invalid configuration in {where}:\n  - {err}") from None
    raw = apply_overrides(raw, overrides or [])
    if overrides:
        where += " + overrides " + " ".join(overrides)
    return _validate(raw, where)


# Why a hand parser and not pydantic-settings (its CliSettingsSource, tried with pydantic-settings 2.16): it reads
# `--predictor.model=mf` flags rather than the `--set KEY=VALUE` that deployments already pass; it takes a value as
# JSON or as a raw string, so the TOML literals users write today (`predictor.model='mf'`, `data.columns.rating=''`
# for "no rating column") would arrive with their quotes; an unknown key is argparse's "unrecognized arguments"
# and exit, not a ConfigError that lists every bad key with the file; and the flat keys of segflow 0.1 could not be
# mapped to their new names before it refuses them. The parsing itself is tomllib's (a value is a TOML literal where
# it is one); what is written here is only walking the dotted key.
def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted ``key=value`` overrides applied."""
    out = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (for example seed=7)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"override {item!r}: the key has an empty part; expected dotted names such as "
                              "cluster.min_cluster_size=20")  # fmt: skip
        value = _parse_value(text.strip())
        for path in override_paths([p.strip() for p in parts], item):
            node = out
            for p in path[:-1]:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"override {item!r}: {p!r} is a value, not a section")
            node[path[-1]] = value
    return out


def dump_config_toml(config: PipelineConfig) -> str:
    """Serialise a config to TOML. TOML has no null: a None is left out, except a numeric setting's None whose
    default is a value (a rule switched off, such as ``cluster.min_cohesion``): that is written as ``""``, which
    loads back as None (``_Section``), so the file reloads as the same configuration. (Text fields keep their own
    meaning of ``""``, such as "no rating column", so theirs are left out as before.)"""
    import tomli_w

    def walk(model: type[BaseModel] | None, d: Any) -> Any:
        if not isinstance(d, dict):
            return d
        out = {}
        for k, v in d.items():
            field = model.model_fields.get(k) if model is not None else None
            ann = field.annotation if field is not None else None
            sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if v is None:
                if (field is not None and allows_none(field.annotation)
                        and field.get_default(call_default_factory=True) is not None):  # fmt: skip
                    out[k] = ""
            else:
                out[k] = walk(sub, v)
        return out

    return tomli_w.dumps(walk(type(config), config.model_dump(mode="json")))


def config_reference_markdown() -> str:
    """Every configuration field with its type, default and description, as markdown (docs/CONFIG.md)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `segmentation.config.PipelineConfig` by `segflow config --reference`; a test keeps it current.",
        "Set fields in a TOML file (`segflow run --config FILE`), with `--set section.field=value`, or in the",
        "Prefect UI's run form. Unknown keys are refused. A numeric setting whose type allows `None` is switched off",
        'with an empty value: `--set cluster.min_cohesion=`, or `min_cohesion = ""` in TOML (which has no null);',
        "a run folder's `config.toml` writes it so.",
        "",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows, subs = [], []
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                subs.append((name, ann))
                continue
            default = f.get_default(call_default_factory=True)
            shown = "" if default is None else json.dumps(default, default=str)
            typ = str(ann).replace("typing.", "").replace("pathlib.", "").replace("<class '", "").replace("'>", "")
            cells = [f"`{prefix}{name}`", f"`{typ}`", f"`{shown}`" if shown else "", f.description or ""]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if rows:
            lines.extend([f"## `{prefix.rstrip('.') or '(top level)'}`", "", "| field | type | default | meaning |",
                          "| --- | --- | --- | --- |", *rows, ""])  # fmt: skip
        for name, sub in subs:
            walk(sub, f"{prefix}{name}.")

    walk(PipelineConfig, "")
    lines.extend(["## Flat `predictor` keys of segflow 0.1", "",
                  "Read for one more release, each with a logged warning naming its new key(s) (in a file, in `--set`, "
                  "in a deployment's parameters); a flat key given beside its new key is refused.", "",
                  "| old key | new key(s) |", "| --- | --- |"])  # fmt: skip
    lines.extend(f"| `predictor.{old}` | " + ", ".join(f"`predictor.{n}`" for n in new) + " |"
                 for old, new in LEGACY_PREDICTOR_KEYS.items())  # fmt: skip
    lines.extend(f"| `predictor.{old}` | ignored: no stage of a run read it (`EncoderRegressorConfig.{new}`) |"
                 for old, new in REMOVED_PREDICTOR_KEYS.items())  # fmt: skip
    lines.extend(f"| `predictor.{old}` | `predictor.{new}`: {meaning} |"
                 for old, (new, _, meaning) in CONVERTED_PREDICTOR_KEYS.items())  # fmt: skip
    lines.append("")
    return "\n".join(lines)
