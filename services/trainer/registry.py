"""Registries of the model zoo: parts registered by name, built from plain config data.

The mmaction2 idea kept small: a registry is a dict from a name to a builder plus what
the zoo says about it. A branch's YAML names its parts (``encoder: r3d``,
``enhancement: compression``, ``forecast_prior: parametric``); the trainer looks them up
here, so adding a part is one new module that registers itself, and nothing else changes.

    @ENCODERS.register("i3d", source="trajlab (after Carreira & Zisserman 2017)")
    def create_i3d(*, in_channels: int, frames: int, height: int, width: int, ...) -> VideoEncoder:
        ...

An unknown name is refused with the list of registered names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

B = TypeVar("B", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Entry(Generic[B]):
    """One registered part: its name, its builder and where it comes from."""

    name: str
    builder: B
    source: str = ""  # where the architecture comes from: a paper, a library and its version
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # free-form facts for `trajlab zoo`


class Registry(Generic[B]):
    """Name -> builder. ``kind`` names the config field in errors ("encoder", "enhancement")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[B]] = {}

    def register(self, name: str, *, source: str = "", **info: Any) -> Callable[[B], B]:
        """Decorator: register ``builder`` under ``name``; a name is registered once."""

        def decorate(builder: B) -> B:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, builder, source, dict(info))
            return builder

        return decorate

    def get(self, name: str) -> Entry[B]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"{self.kind}: unknown {name!r}; registered: {', '.join(sorted(self._entries))}"
            ) from None

    def build(self, name: str, /, **kwargs: Any) -> Any:
        return self.get(name).builder(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[B]]:
        return iter(self._entries[n] for n in self.names())


# The zoo's registries. Parts register themselves when their package is imported
# (``services.trainer.encoders`` imports every encoder module).
ENCODERS: Registry[Callable[..., Any]] = Registry("encoder")
ENHANCEMENTS: Registry[Callable[..., Any]] = Registry("enhancement")
HEADS: Registry[Callable[..., Any]] = Registry("head")
FORECAST_PRIORS: Registry[Callable[..., Any]] = Registry("forecast_prior")
