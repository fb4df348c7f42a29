"""A method named with options, ``name:key=value:key=value``, and the options it gets.

Runs that compare methods (bench, prune-eval, the service) also hold options shared by
every method that takes them: a proxy model, hierarchical's ``--keep``, proxy-rescore's
``--rescore``. Which method takes which is read from the method class (its constructor's
options, :attr:`~.base.AttributionMethod.option_groups`,
:meth:`~.base.AttributionMethod.needs_proxy`), never from its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import InputError
from .base import METHODS, AttributionMethod, available_methods, create_method


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in {"none", "null"}:
        return None
    if low in {"true", "false"}:
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class MethodSpec:
    """A method name with options, written ``name:key=value:key=value``."""

    label: str
    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "MethodSpec":
        parts = [p.strip() for p in text.strip().split(":")]
        name, opts = parts[0], {}
        for p in parts[1:]:
            if "=" not in p:
                raise InputError(f"method option {p!r} in {text!r} is not key=value")
            k, v = p.split("=", 1)
            opts[k.strip().replace("-", "_")] = _parse_value(v.strip())
        return cls(text.strip(), name, tuple(sorted(opts.items())))

    @property
    def method_class(self) -> type:
        if self.name not in METHODS:
            raise InputError(f"unknown method {self.name!r}; available: {', '.join(available_methods())}")
        return METHODS[self.name]

    @property
    def needs_proxy(self) -> bool:
        return self.method_class.needs_proxy(dict(self.options))

    @property
    def cache_identity(self) -> dict[str, Any]:
        return self.cache_identity_for(None)

    def cache_identity_for(self, model: str | None) -> dict[str, Any]:
        """What its cached results on ``model`` must match beside its label (e.g. the AT2
        weights that ship for that model)."""
        return dict(self.method_class.cache_identity(dict(self.options), model))

    def resolve(self, shared: Mapping[str, Any]) -> dict[str, Any]:
        """The options to build this method with: the shared ones it takes (those that
        are not None), then its own, which replace shared ones of the same group."""
        cls = self.method_class
        own = dict(self.options)
        replaced = {name for group in cls.option_groups if group & own.keys() for name in group}
        taken = cls.option_names()
        opts = {k: v for k, v in shared.items() if v is not None and k in taken and k not in replaced}
        if not cls.needs_proxy({**opts, **own}):
            opts.pop("proxy", None)
        return {**opts, **own}

    def create(self, shared: Mapping[str, Any]) -> AttributionMethod:
        """The method object built with :meth:`resolve`'s options. Runs take the object,
        not keywords: an option may share a name with ``Attributor.run``'s own (proxy's
        ``method``)."""
        return create_method(self.name, **self.resolve(shared))


__all__ = ["MethodSpec"]
