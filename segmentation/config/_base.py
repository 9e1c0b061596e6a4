"""Shared base of the configuration sections."""

from typing import Any

from pydantic import BaseModel, ConfigDict
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_factory_defaults_in_schema)
