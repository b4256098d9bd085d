"""A tiny name -> factory registry, so configs can pick components by string."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps names to factories; unknown names fail with the list of known ones."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(entry: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is already registered.")
      self._entries[name] = entry
      return entry
    return decorator

  def get(self, name: str, field: str | None = None) -> T:
    if name not in self._entries:
      where = f"config.{field}=" if field else f"{self.kind} "
      raise ValueError(f"Unknown {where}{name!r}; known: {', '.join(sorted(self._entries))}.")
    return self._entries[name]

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def names(self) -> list[str]:
    return sorted(self._entries)
