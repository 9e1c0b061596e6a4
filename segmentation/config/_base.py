"""Shared base of the configuration sections."""

import typing
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import to_jsonable_python


def _factory_defaults_in_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """Write the default of every value field built by a ``default_factory`` (the lists) into the JSON schema.

    pydantic leaves such defaults out, and the Prefect UI's run form then starts those fields as empty lists
    whenever the deployment's parameters do not spell them out (a ``prefect.yaml`` deployment). Sections, the
    other default_factory fields, need none: the form builds them from their own fields' defaults.
    """
    props = schema.get("properties", {})
    for name, field in cls.model_fields.items():
        if field.default_factory is not None and name in props:
            value = field.get_default(call_default_factory=True)
            if not isinstance(value, BaseModel):
                props[name]["default"] = to_jsonable_python(value)


def allows_none(annotation: Any) -> bool:
    """True for an optional field that holds no text or path (``int | None``, ``float | None``, ...): for those an
    empty string can only mean "off". Text and path fields keep ``""`` as given, for their own checks
    (``data.columns.rating = ""``: no rating column; ``data.items = ""``: refused, naming the flag)."""
    args = typing.get_args(annotation)
    text = any(isinstance(a, type) and issubclass(a, (str, PurePath)) for a in args)
    return type(None) in args and not text


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_factory_defaults_in_schema)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, data: Any) -> Any:
        """An empty string switches an optional setting off (None): TOML has no null, so ``key = ""`` in a file and
        ``--set key=`` on the command line are how a numeric setting whose default is a value is turned off, as
        ``data.columns.rating = ""`` already says "no rating column". ``dump_config_toml`` writes it so."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            k: None if v == "" and k in fields and allows_none(fields[k].annotation) else v for k, v in data.items()
        }
