"""The feature schema a model learned: each feature's kind, and the check of an input against it.

One rule set for every path: the stream loop (Kafka or file records) rejects a feature that
changes kind with ``type_mismatch``, and serving (``/v1/predict``, ``/v2/.../infer``)
checks each instance against the same kinds, plus the feature names: an unknown feature is
``unknown_feature``, a learned one that is absent is ``missing_feature`` (unless missing
features may be imputed, by the scaler's running mean, i.e. a zero standardised input).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from streamcl.errors import DecodeError

__all__ = ["FeatureSchema", "Kind", "kind_of"]

#: Kind of a feature: a number (int or float), a category (str) or a boolean.
Kind = Literal["number", "category", "boolean"]

#: Column names the featurizer adds itself (label lags); never input features.
_INTERNAL_PREFIX = "__lag"


def kind_of(value: Any) -> Kind:
    """The kind of a feature value: ``"category"`` for str, ``"boolean"`` for bool, else number."""
    if isinstance(value, str):
        return "category"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _word(kind: str) -> str:
    return {"number": "a number", "category": "a string", "boolean": "a boolean"}.get(kind, kind)


def mismatch(name: str, kind: str, value: Any, prefix: str = "features.") -> DecodeError:
    """The ``type_mismatch`` error of feature ``name`` holding ``value`` where ``kind`` was."""
    return DecodeError("type_mismatch", f"{prefix}{name}", f"expected {_word(kind)}, got {value!r}")


@dataclass(frozen=True)
class FeatureSchema:
    """Feature name -> kind, as learned (fixed when a feature is first learned).

    Attributes
    ----------
    kinds : dict[str, str]
        ``"number"``, ``"category"`` or ``"boolean"`` per input feature; never mutated.
    """

    kinds: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_kinds(cls, kinds: Mapping[str, str]) -> FeatureSchema:
        """The schema of a featurizer's ``kinds`` (its internal lag columns left out)."""
        return cls({n: k for n, k in kinds.items() if not n.startswith(_INTERNAL_PREFIX)})

    def check(
        self, features: Mapping[str, Any], prefix: str = "features.", impute: bool = False
    ) -> list[str]:
        """Check one instance's features strictly against the schema.

        An empty schema (nothing learned yet) accepts anything.

        Parameters
        ----------
        features
            Feature name -> value of one instance (already decoded: finite, flat).
        prefix
            Prepended to the feature name in the error's ``field``.
        impute
            Accept learned features that are absent (they are imputed).

        Returns
        -------
        list[str]
            Names of the learned features absent from ``features`` (empty unless ``impute``).

        Raises
        ------
        DecodeError
            ``unknown_feature``, ``type_mismatch`` or ``missing_feature``, naming the field.
        """
        if not self.kinds:
            return []
        for name, value in features.items():
            kind = self.kinds.get(name)
            if kind is None:
                known = ", ".join(sorted(self.kinds)[:20])
                raise DecodeError(
                    "unknown_feature", f"{prefix}{name[:64]}", f"not a learned feature ({known})"
                )
            if kind != kind_of(value):
                raise mismatch(name, kind, value, prefix)
        missing = [n for n in self.kinds if n not in features]
        if missing and not impute:
            raise DecodeError(
                "missing_feature", f"{prefix}{missing[0]}", f"learned feature absent: {missing}"
            )
        return missing
