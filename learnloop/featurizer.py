"""Featurizer: context + persona + actions -> Vowpal Wabbit ``cb_explore_adf`` text.

Pure: no I/O, no clock. Namespaces follow :mod:`schemas.vw_layout`.

>>> from schemas import Action, Context
>>> lines = example(Context(features={"page": "home", "hour": 9}), "builder",
...                 [Action(id="bestsellers"), Action(id="trending", features={"new": True})])
>>> lines[0]
'shared |c page=home hour:9.0 |u persona=builder'
>>> lines[2]
'|a id=trending new=true'
>>> labelled(lines, chosen_index=1, reward=3.0, probability=0.25)[2]
'0:-3.0:0.25 |a id=trending new=true'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from schemas.events import DecisionEvent
from schemas.features import Action, Context
from schemas.vw_layout import ACTION_NS, CONTEXT_NS, USER_NS, flatten

_ESCAPE = str.maketrans({" ": "_", "\t": "_", "\n": "_", "|": "/", ":": ";"})


def _token(text: str) -> str:
    """Make a name or value safe for VW text format (no spaces, pipes or colons)."""
    return text.translate(_ESCAPE)


def _piece(key: str, value: object) -> str:
    """One feature in VW text: ``name=value`` for strings and booleans, ``name:value``
    for numbers (so ``True`` and ``1`` featurize differently)."""
    name = _token(key)
    if isinstance(value, bool):
        return f"{name}={'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"{name}:{value}"
    return f"{name}={_token(str(value))}"


MAX_PIECES = 50_000
"""Most features remembered by :func:`_features` (it starts over when full)."""
_pieces: dict[tuple[str, type, object], str] = {}


def _features(features: Mapping[str, object]) -> list[str]:
    """The features in VW text, in order. Feature values repeat (buckets, regions,
    flags), so each (name, type, value) is formatted once; the type is in the key
    because ``True == 1 == 1.0`` in Python, and ``0.0``/``-0.0`` (equal, different
    text) are never remembered. Output only, never a different line."""
    pieces = _pieces
    out = []
    for key, value in features.items():
        kind = value.__class__
        if kind is float and value == 0.0:
            out.append(_piece(key, value))
            continue
        try:
            memo = (key, kind, value)
            piece = pieces.get(memo)
        except TypeError:  # an unhashable value: format it every time
            out.append(_piece(key, value))
            continue
        if piece is None:
            if len(pieces) >= MAX_PIECES:
                pieces.clear()
            piece = pieces[memo] = _piece(key, value)
        out.append(piece)
    return out


_SCALARS = frozenset({str, float, int, bool})


def _flat(features: Mapping[str, object]) -> Mapping[str, object]:
    """:func:`~schemas.vw_layout.flatten`, skipped when nothing is nested (the common
    case, and flatten would return the same items in the same order)."""
    for value in features.values():
        if value.__class__ not in _SCALARS:
            return flatten(features)
    return features


def shared_line_of(features: Mapping[str, object], persona: str) -> str:
    """The ``shared`` line of a context's features (one level of nesting) and a persona.

    The dict-level form of :func:`shared_line`, for readers that hold features already
    validated (a learnloop Parquet dataset's ``context_json``) and skip the models.

    >>> shared_line_of({"geo": {"region": "eu"}, "new": True, "n": 1}, "visitor")
    'shared |c geo.region=eu new=true n:1 |u persona=visitor'
    """
    ctx = " ".join(_features(_flat(features)))
    return f"shared |{CONTEXT_NS} {ctx} |{USER_NS} persona={_token(persona)}".replace("  ", " ")


def action_line_of(action_id: str, features: Mapping[str, object]) -> str:
    """One action line from an action's id and features (the dict-level
    :func:`action_line`)."""
    feats = " ".join(_features(features))
    tail = f" {feats}" if feats else ""
    return f"|{ACTION_NS} id={_token(action_id)}{tail}"


def shared_line(context: Context, persona: str) -> str:
    """The ``shared`` line: context namespace and user namespace."""
    return shared_line_of(context.features, persona)


def action_line(action: Action) -> str:
    """One action line: the action id plus its features."""
    return action_line_of(action.id, action.features)


def example(context: Context, persona: str, actions: Sequence[Action]) -> list[str]:
    """A multi-line ADF example for prediction."""
    return [shared_line(context, persona), *(action_line(a) for a in actions)]


class CachedFeaturizer:
    """:func:`example` with a memory of lines already built.

    Candidate actions repeat from decision to decision, and so do most
    contexts (page, persona, region...), so remembering their VW lines removes
    most of the featurizing cost from the learn path. Keys use ``repr`` of the
    features: exact for strings, numbers and booleans (``True`` and ``1.0`` are
    equal in Python but featurize differently, their reprs differ).

    >>> from schemas import Action, Context
    >>> cached = CachedFeaturizer()
    >>> ctx, acts = Context(features={"page": "home"}), [Action(id="a", features={"new": True})]
    >>> cached.example(ctx, "visitor", acts) == example(ctx, "visitor", acts)
    True
    """

    def __init__(self, max_size: int = 50_000) -> None:
        self.max_size = max_size
        self._shared: dict[tuple[str, str], str] = {}
        self._actions: dict[tuple[str, str], str] = {}

    def example(self, context: Context, persona: str, actions: Sequence[Action]) -> list[str]:
        """The same lines as :func:`example`."""
        shared_key = (persona, repr(context.features))
        shared = self._shared.get(shared_key)
        if shared is None:
            if len(self._shared) >= self.max_size:
                self._shared.clear()  # many distinct contexts: start over rather than grow
            shared = self._shared[shared_key] = shared_line(context, persona)
        lines = [shared]
        cache = self._actions
        for action in actions:
            key = (action.id, repr(action.features))
            line = cache.get(key)
            if line is None:
                if len(cache) >= self.max_size:
                    cache.clear()
                line = cache[key] = action_line(action)
            lines.append(line)
        return lines


def labelled(
    lines: Sequence[str], chosen_index: int, reward: float, probability: float
) -> list[str]:
    """Put the CB label (cost = -reward) on the chosen action's line."""
    out = list(lines)
    row = chosen_index + 1
    out[row] = f"0:{-float(reward)}:{probability} {out[row]}"
    return out


def training_example(decision: DecisionEvent, reward: float) -> list[str]:
    """A labelled ADF example for learning from a logged decision and its reward."""
    lines = example(decision.context, decision.persona, decision.actions)
    return labelled(lines, decision.chosen_index, reward, decision.chosen_probability)
