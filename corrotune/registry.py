"""A named registry: register by decorator, look up by one factory that lists valid names.

Trainables, search spaces and (later) attention modules each keep one ``Registry``::

    SPACES = Registry("search space")

    @SPACES.register("classifier_basic")
    def space(trial): ...

    SPACES.get("classifer_basic")
    # KeyError: Unknown search space 'classifer_basic'; did you mean 'classifier_basic'?
    #           Valid names: classifier_basic
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["Registry", "closest"]

T = TypeVar("T")


def closest(name: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """Returns the candidate most similar to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


class Registry(Generic[T]):
    """Maps string keys to objects; unknown keys fail with the valid names listed.

    Args:
        kind: What the registry holds, used in error messages ("trainable").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under ``name`` (names are unique)."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Returns the object registered as ``name``.

        Raises:
            KeyError: with a did-you-mean hint and the list of valid names.
        """
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = closest(name, list(self._items))
        hint_text = f"; did you mean {hint!r}?" if hint else "."
        return f"Unknown {self.kind} {name!r}{hint_text} Valid names: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items  # a list or mapping from a study is no name

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
