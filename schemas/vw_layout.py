"""How contexts and actions map onto Vowpal Wabbit namespaces.

Shared by the online featurizer (VW text) and the DSJson export, so a model
trained from either sees the same namespaces:

- ``c`` — context features (nested dicts flattened to ``parent.key``),
- ``u`` — the shopper: persona,
- ``a`` — the action: its id and features.

Interactions in ``vw_args`` refer to these letters, e.g. ``-q ca -q ua`` or ``-q ::``.

>>> flatten({"page": "home", "geo": {"region": "eu"}})
{'page': 'home', 'geo.region': 'eu'}
"""

from __future__ import annotations

from collections.abc import Mapping

CONTEXT_NS = "c"
USER_NS = "u"
ACTION_NS = "a"

FeatureValue = str | float | int | bool


def flatten(features: Mapping[str, object]) -> dict[str, FeatureValue]:
    """Flatten one level of nesting into dotted names."""
    flat: dict[str, FeatureValue] = {}
    for key, value in features.items():
        if isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value  # type: ignore[assignment]
    return flat
