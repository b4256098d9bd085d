"""Module attributes resolved on first use, so importing a package imports no JAX by itself."""
from __future__ import annotations

import importlib
import types


def module_getattr(package: str, aliases: dict[str, str] | None = None, parts: tuple = ()):
  """A module-level `__getattr__` for `package`.

  `aliases` maps an attribute to the module it stands for (old import paths); `parts` are the
  package's submodules whose public names it re-exports, searched in order.
  """
  aliases = aliases or {}

  def __getattr__(name: str):
    if name in aliases:
      return importlib.import_module(aliases[name])
    if name in parts:
      return importlib.import_module(f"{package}.{name}")
    if not name.startswith("_"):
      for part in parts:
        value = vars(importlib.import_module(f"{package}.{part}")).get(name)
        if value is not None and not isinstance(value, types.ModuleType):
          return value
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  return __getattr__
