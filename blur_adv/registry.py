"""A tiny name -> factory registry, so configs can pick components by string."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from blur_adv import config_checks

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps names to factories; unknown names fail with `config_checks`' one-line `ConfigError`.

  With `field`, the registry also checks that config field in `config_checks.validate`: one
  name (e.g. `config.trainer`) or, with `many`, a tuple of names (`config.evaluators`).
  """

  def __init__(self, kind: str, field: str | None = None, many: bool = False):
    self.kind = kind
    self.field = field
    self.many = many
    self._entries: dict[str, T] = {}
    if field is not None:
      config_checks.register_fields(field, validator=self.check_config)

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(entry: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is already registered.")
      self._entries[name] = entry
      return entry
    return decorator

  def get(self, name: str, field: str | None = None) -> T:
    if name not in self._entries:
      raise config_checks.unknown_name(self.kind, field, name, self._entries)
    return self._entries[name]

  def check_config(self, config):
    """Every name in `config.<field>` is registered."""
    if self.many:
      config_checks.check_names(self.field, config[self.field], self._entries, self.kind)
    else:
      self.get(config[self.field], self.field)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def names(self) -> list[str]:
    return sorted(self._entries)
