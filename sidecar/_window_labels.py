"""Stored labels as the metrics read them, checked against the bundle's label rule.

The rule (``_labels.label_rule``) runs once per distinct stored label, not
once per record: each record gets a code into the distinct labels
(``np.unique`` on the numbers, Arrow's dictionary encoding on the texts) and
the checked labels come back by one NumPy ``take``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .recording._columnar import JSON, TEXT, decode_labels

if TYPE_CHECKING:
    import pyarrow as pa

    from .bundle._bundle import Bundle

__all__ = ["checked_labels"]


def checked_labels(table: pa.Table, bundle: Bundle, notes: list[str]) -> np.ndarray:
    """Stored labels as the metrics read them; one they cannot score is left out and counted.

    ``/feedback`` refuses such labels, but a store written by an older version,
    or by hand, may hold one: it must not fail the whole analysis. The label
    rule runs once per distinct value, not once per record.
    """
    from ._labels import MISSING, label_rule

    kind = table.column("label_kind").to_numpy(zero_copy_only=False)
    num = table.column("label_num").to_numpy(zero_copy_only=False)
    coerce, expected, allowed = label_rule(bundle.task, bundle.advanced.classes)
    have = kind >= 0
    if bundle.task == "regression" and not np.any(kind >= 2):
        labels = decode_labels(kind, num, table.column("label_text").to_pylist())
        ok = np.isfinite(num)
        bad_at = np.flatnonzero(have & ~ok)
        good = labels
        good[have & ok] = num[have & ok].astype(object)
        shown_values = labels[bad_at].tolist()
    else:
        codes, values = _label_codes(kind, num, table.column("label_text"))
        coerced = [coerce(v) for v in values]
        valid = np.array(
            [g is not MISSING and (allowed is None or g in allowed) for g in coerced] + [True],
            dtype=bool,
        )
        lut = np.full(len(values) + 1, None, dtype=object)
        for at, (got, ok_) in enumerate(zip(coerced, valid, strict=False)):
            lut[at] = got if ok_ else None  # one by one: a list-valued label stays one value
        pick = np.where(have, codes, len(values))
        good = lut[pick]
        bad_at = np.flatnonzero(~valid[pick])
        shown_values = [values[c] for c in codes[bad_at].tolist()]
    if bad_at.size:
        shown_counts: dict[str, int] = {}
        for v in shown_values:
            shown = repr(v)[:40]
            shown_counts[shown] = shown_counts.get(shown, 0) + 1
        shown = ", ".join(
            f"{k} ({n})" for k, n in sorted(shown_counts.items(), key=lambda kv: -kv[1])[:5]
        )
        notes.append(
            f"{bad_at.size} stored labels were left out: each label must be {expected}; got {shown}"
        )
        good[bad_at] = None
    return good


def _label_codes(
    kind: np.ndarray, num: np.ndarray, text: pa.ChunkedArray
) -> tuple[np.ndarray, list[Any]]:
    """Each record's index into the distinct stored labels (-1: none), and those labels.

    Distinct by kind and value (``1``, ``1.0`` and ``True`` stay apart, as stored);
    numbers by ``np.unique``, texts by Arrow's dictionary encoding.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    codes = np.full(len(kind), -1, dtype=np.int64)
    values: list[Any] = []
    for k in (0, 1, 2):  # float, int, bool: the value is in ``num``
        sel = np.flatnonzero(kind == k)
        if sel.size:
            uniq, inverse = np.unique(num[sel], return_inverse=True)
            codes[sel] = np.asarray(inverse).reshape(-1) + len(values)
            values.extend(decode_labels(np.full(len(uniq), k), uniq, [None] * len(uniq)).tolist())
    for k in (TEXT, JSON):
        sel = np.flatnonzero(kind == k)
        if sel.size:
            encoded = pc.dictionary_encode(text.take(pa.array(sel))).combine_chunks()
            texts = encoded.dictionary.to_pylist()
            codes[sel] = encoded.indices.to_numpy(zero_copy_only=False) + len(values)
            values.extend(
                decode_labels(np.full(len(texts), k), np.zeros(len(texts)), texts).tolist()
            )
    return codes, values
