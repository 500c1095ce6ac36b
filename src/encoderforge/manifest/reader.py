"""Typed reads of manifest JSON: every failure is one ArtifactError naming the dotted field, what it must be
and what it is."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

from encoderforge.errors import ArtifactError

FIX = "re-export the artifact"
T = TypeVar("T")
E = TypeVar("E", bound=Enum)
JSON = Mapping[str, Any]
EMPTY: JSON = MappingProxyType({})


class Reader:
    """Typed reads of one JSON object; every failure names the dotted field."""

    def __init__(self, data: object, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(data, Mapping):
            self.fail("", "an object", data)
        self.data: Mapping[str, Any] = data

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where and key else self.where or key

    def fail(self, key: str, expected: str, value: object) -> NoReturn:
        got = "null" if value is None else type(value).__name__
        label = f"field {self.name(key)!r}" if self.name(key) else "the manifest"
        raise ArtifactError(f"{self.source}: {label} must be {expected}, got {got}; {FIX}")

    def raw(self, key: str, *, required: bool) -> Any:
        if key not in self.data:
            if required:
                raise ArtifactError(f"{self.source}: field {self.name(key)!r} is missing; {FIX}")
            return None
        return self.data[key]

    def _typed(self, key: str, kinds: tuple[type, ...], expected: str, required: bool, default: Any) -> Any:
        value = self.raw(key, required=required)
        if value is None and not required:
            return default
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.fail(key, expected, value)
        return value

    def string(self, key: str) -> str:
        return str(self._typed(key, (str,), "a string", True, None))

    def opt_string(self, key: str) -> str | None:
        value = self._typed(key, (str,), "a string or null", False, None)
        return None if value is None else str(value)

    def integer(self, key: str) -> int:
        return int(self._typed(key, (int,), "an integer", True, None))

    def opt_integer(self, key: str) -> int | None:
        value = self._typed(key, (int,), "an integer or null", False, None)
        return None if value is None else int(value)

    def opt_float(self, key: str) -> float | None:
        value = self._typed(key, (int, float), "a number or null", False, None)
        return None if value is None else float(value)

    def boolean(self, key: str, default: bool = False) -> bool:
        return bool(self._typed(key, (bool,), "true or false", False, default))

    def obj(self, key: str, *, required: bool = False) -> JSON:
        value = self._typed(key, (Mapping,), "an object", required, EMPTY)
        return MappingProxyType(dict(value))

    def opt_obj(self, key: str) -> JSON | None:
        value = self._typed(key, (Mapping,), "an object or null", False, None)
        return None if value is None else MappingProxyType(dict(value))

    def enum(self, key: str, kind: type[E]) -> E | None:
        value = self.opt_string(key)
        if value is None:
            return None
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(str(e.value) for e in kind)
            raise ArtifactError(f"{self.source}: field {self.name(key)!r} is {value!r}, not one of {choices}; "
                                f"{FIX}") from None

    def sub(self, key: str) -> Reader:
        return Reader(self.raw(key, required=True), self.name(key), self.source)

    def records(self, key: str, parse: Callable[[Reader], T], expected: str, *, required: bool = False) -> tuple[T, ...]:
        value = self.raw(key, required=required)
        if value is None and not required:
            return ()
        if not isinstance(value, list):
            self.fail(key, expected, value)
        return tuple(parse(Reader(item, f"{self.name(key)}[{i}]", self.source)) for i, item in enumerate(value))

    def strs(self, key: str) -> tuple[str, ...]:
        value = self.raw(key, required=False) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "a list of strings", value)
        return tuple(value)

    def ints(self, key: str) -> tuple[int, ...]:
        value = self.raw(key, required=False) or []
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            self.fail(key, "a list of integers", value)
        return tuple(value)

    def str_map(self, key: str, *, required: bool = False) -> Mapping[str, str]:
        value = self.raw(key, required=required)
        if value is None and not required:
            return MappingProxyType({})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            self.fail(key, "an object of name -> string", value)
        return MappingProxyType(dict(value))

    def int_map(self, key: str) -> Mapping[str, int]:
        value = self.raw(key, required=False) or {}
        if not isinstance(value, Mapping) or not all(isinstance(v, int) for v in value.values()):
            self.fail(key, "an object of name -> integer", value)
        return MappingProxyType(dict(value))
