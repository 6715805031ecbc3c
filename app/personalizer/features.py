"""Personalizer's features onto learnloop's: any JSON in, one level of namespaces out.

Personalizer takes ``contextFeatures`` and each action's ``features`` as a *list* of
JSON objects whose values may nest to any depth and hold arrays; learnloop's context
has exactly one level of namespaces (``{ns: {key: scalar}}`` or a top-level
``{key: scalar}``) and an action's features are flat (``schemas/features.py``). The
mapping keeps every value and makes the names from the path to it:

============================================  ===========================================
Personalizer                                  learnloop
============================================  ===========================================
``[{"user": {"tier": "gold"}}]``              ``{"user": {"tier": "gold"}}``
``[{"user": {"loc": {"lat": 47.6}}}]``        ``{"user": {"loc.lat": 47.6}}`` (dotted path)
``[{"timeOfDay": "Morning"}]``                ``{"timeOfDay": "Morning"}`` (top-level scalar)
``[{"tags": ["a", "b"]}]``                    ``{"tags": {"a": True, "b": True}}``
``[{"emb": [0.5, 0.25]}]``                    ``{"emb": {"0": 0.5, "1": 0.25}}``
``[{"u": {"h": [{"k": 1}, {"k": 2}]}}]``      ``{"u": {"h.0.k": 1.0, "h.1.k": 2.0}}``
``["loose", 3]`` (items that are no object)   ``{"_": {"loose": True, "1": 3.0}}``
``null`` anywhere, ``""`` in an array         dropped
============================================  ===========================================

A string in an array is a present/absent fact (VW's JSON reader makes the string the
feature's name), so it becomes a boolean feature named by it; a number in an array is
a position, so it is named by its index. The objects of the list are merged in order
(a key given twice keeps the last value). Actions use the same rules with the
action's features flat (``[{"info": {"cat": "x"}}]`` -> ``{"info.cat": "x"}``).

Pure: no I/O. Bad input raises :class:`FeatureError` (a
:class:`~learnloop.errors.InvalidInput`) naming where it is, within learnloop's
limits: names of 1..128 characters, strings up to 1024, finite numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from learnloop.errors import InvalidInput

MAX_KEY: Final = 128
MAX_STRING: Final = 1024
MAX_DEPTH: Final = 16
"""Nesting deeper than this is refused: no real feature set needs it, and it bounds
the recursion on a hostile body."""
LOOSE_NS: Final = "_"
"""Where items of a feature list that are not objects go."""

Scalar = bool | float | str
Flat = dict[str, Scalar]
Features = dict[str, Scalar | Flat]


class FeatureError(InvalidInput):
    """A feature learnloop cannot take; the message says where and why."""


def _scalar(value: Any, where: str) -> Scalar | None:
    """The learnloop value of a JSON scalar (None: dropped), or an error for a bad one."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise FeatureError(f"{where}: numbers must be finite (got {value!r})")
        return number
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise FeatureError(
                f"{where}: a string feature may have at most {MAX_STRING} characters "
                f"(got {len(value)})"
            )
        return value
    raise FeatureError(f"{where}: {type(value).__name__} is not a JSON feature value")


def _name(prefix: str, key: str, where: str) -> str:
    name = f"{prefix}.{key}" if prefix else key
    if len(name) > MAX_KEY:
        raise FeatureError(
            f"{where}: the feature name {name[:40]!r}... has {len(name)} characters; "
            f"learnloop allows {MAX_KEY} (nest less deeply or use shorter keys)"
        )
    return name


def _flatten(value: Any, prefix: str, where: str, out: Flat, depth: int) -> None:
    """Add ``value`` to ``out`` under dotted names starting with ``prefix``."""
    if depth > MAX_DEPTH:
        raise FeatureError(f"{where}: features nest more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise FeatureError(f"{where}: feature names must be non-empty strings")
            _flatten(item, _name(prefix, key, where), f"{where}.{key}", out, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            here = f"{where}[{index}]"
            if isinstance(item, str):
                if item:
                    _scalar(item, here)
                    out[_name(prefix, item, here)] = True
            elif isinstance(item, dict | list):
                _flatten(item, _name(prefix, str(index), here), here, out, depth + 1)
            else:
                scalar = _scalar(item, here)
                if scalar is not None:
                    out[_name(prefix, str(index), here)] = scalar
    else:
        scalar = _scalar(value, where)
        if scalar is not None:
            if not prefix:
                raise FeatureError(f"{where}: a feature needs a name")
            out[prefix] = scalar


def _loose(item: Any, index: int, where: str) -> Flat:
    """An item of a feature list that is no object: a string names a boolean feature,
    another value is named by its index in the list."""
    loose: Flat = {}
    if isinstance(item, str):
        if item:
            _scalar(item, where)
            loose[_name("", item, where)] = True
    elif isinstance(item, list):
        _flatten(item, str(index), where, loose, 1)
    else:
        scalar = _scalar(item, where)
        if scalar is not None:
            loose[str(index)] = scalar
    return loose


def _items(items: Sequence[Any] | None, where: str) -> Sequence[Any]:
    if items is None:
        return ()
    if not isinstance(items, list | tuple):
        raise FeatureError(f"{where}: features are a list of JSON objects")
    return items


def context_features(items: Sequence[Any] | None, where: str = "contextFeatures") -> Features:
    """A Personalizer context (a list of objects) as learnloop context features.

    >>> context_features([{"user": {"tier": "gold", "loc": {"lat": 47.6}}},
    ...                   {"device": {"mobile": True}}, {"timeOfDay": "Morning"}])
    {'user': {'tier': 'gold', 'loc.lat': 47.6}, 'device': {'mobile': True}, 'timeOfDay': 'Morning'}
    >>> context_features([{"tags": ["a", "b"], "emb": [0.5, None, 2]}, "loose"])
    {'tags': {'a': True, 'b': True}, 'emb': {'0': 0.5, '2': 2.0}, '_': {'loose': True}}
    """
    features: Features = {}
    for index, item in enumerate(_items(items, where)):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            loose = _loose(item, index, here)
            if loose:
                _merge(features, LOOSE_NS, loose, here)
            continue
        for namespace, value in item.items():
            if not isinstance(namespace, str) or not namespace:
                raise FeatureError(f"{here}: namespace names must be non-empty strings")
            _name("", namespace, here)
            ns_where = f"{here}.{namespace}"
            if isinstance(value, dict | list):
                flat: Flat = {}
                _flatten(value, "", ns_where, flat, 1)
                if flat:
                    _merge(features, namespace, flat, ns_where)
                continue
            scalar = _scalar(value, ns_where)
            if scalar is None:
                continue
            if isinstance(features.get(namespace), dict):
                raise FeatureError(
                    f"{ns_where}: {namespace!r} is a namespace (an object) in another item "
                    "and a single value here; use one or the other"
                )
            features[namespace] = scalar
    return features


def _merge(features: Features, namespace: str, flat: Flat, where: str) -> None:
    existing = features.get(namespace)
    if existing is None:
        features[namespace] = flat
    elif isinstance(existing, dict):
        existing.update(flat)
    else:
        raise FeatureError(
            f"{where}: {namespace!r} is a single value in another item and a namespace "
            "(an object) here; use one or the other"
        )


def action_features(items: Sequence[Any] | None, where: str = "features") -> Flat:
    """A Personalizer action's features (a list of objects) as flat learnloop features.

    >>> action_features([{"type": "News"}, {"info": {"cat": "x", "len": 3}}, {"tags": ["hot"]}])
    {'type': 'News', 'info.cat': 'x', 'info.len': 3.0, 'tags.hot': True}
    """
    flat: Flat = {}
    for index, item in enumerate(_items(items, where)):
        here = f"{where}[{index}]"
        if isinstance(item, dict):
            _flatten(item, "", here, flat, 1)
        else:
            for key, value in _loose(item, index, here).items():
                flat[_name(LOOSE_NS, key, here)] = value
    return flat
