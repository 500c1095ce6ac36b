"""A small generic registry behind families, task heads, passes and backends.

An unknown key raises `UnknownKeyError` listing the valid ones; nothing falls back silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from encoderforge.errors import UnknownKeyError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, item: T, *, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._items[name] = item
        for alias in aliases:
            self._aliases[alias] = name
        return item

    def decorator(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def wrap(item: T) -> T:
            return self.register(name, item, aliases=aliases)

        return wrap

    def canonical(self, key: str) -> str:
        if key in self._items:
            return key
        if key in self._aliases:
            return self._aliases[key]
        raise UnknownKeyError(
            f"unknown {self.kind} {key!r}; choose one of: {', '.join(self.choices())}"
        )

    def get(self, key: str) -> T:
        return self._items[self.canonical(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._items or key in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())

    def choices(self) -> list[str]:
        """Canonical names, each followed by its aliases in parentheses."""
        by_name: dict[str, list[str]] = {name: [] for name in self._items}
        for alias, name in self._aliases.items():
            by_name[name].append(alias)
        return [f"{n} ({', '.join(a)})" if a else n for n, a in by_name.items()]
