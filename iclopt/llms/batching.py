"""The batching plan of a local model: which rows share a cached prefix, how to pad.

Pure functions over token sequences (no model): :func:`prefix_groups` finds the rows
that share a token prefix worth one key/value cache, :func:`plan_prefix_groups` keeps the
groups worth their extra forward passes, and :func:`padded_batches` cuts rows into the
padded batches that compute the fewest tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["common_prefix_len", "padded_batches", "plan_prefix_groups", "prefix_groups"]


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_groups(
    seqs: Sequence[Sequence[int]], limits: Sequence[int], min_prefix: int
) -> list[tuple[int, list[int]]]:
    """Group rows that share a token prefix of at least ``min_prefix`` tokens.

    Args:
        seqs: Token sequences.
        limits: Per row, the longest prefix that may be cached (so that the tokens whose
            logits are needed are still computed).
        min_prefix: Shorter shared prefixes are not worth a separate cache.

    Returns:
        ``(prefix_length, row indices)`` pairs; prefix_length 0 means plain batching.
    """
    order = sorted(range(len(seqs)), key=lambda i: tuple(seqs[i]))
    groups: list[tuple[int, list[int]]] = []
    cur: list[int] = []
    cur_p = 0
    for i in order:
        if cur:
            p = min(cur_p, common_prefix_len(seqs[cur[0]], seqs[i]), limits[i])
            if p >= min_prefix:
                cur.append(i)
                cur_p = p
                continue
            groups.append((cur_p if cur_p >= min_prefix and len(cur) > 1 else 0, cur))
        cur, cur_p = [i], limits[i]
    if cur:
        groups.append((cur_p if cur_p >= min_prefix and len(cur) > 1 else 0, cur))
    # merge the rows of all plain groups into one, so they batch together
    plain = [i for p, rows in groups if p == 0 for i in rows]
    out = [(p, rows) for p, rows in groups if p > 0]
    if plain:
        out.append((0, plain))
    return out


def plan_prefix_groups(
    seqs: Sequence[Sequence[int]],
    limits: Sequence[int],
    *,
    min_prefix: int,
    overhead: int,
    passes: int = 1,
) -> list[tuple[int, list[int]]]:
    """Prefix groups worth their extra forward passes; every other row runs plain.

    A group of ``r`` rows sharing ``p`` prefix tokens saves ``(r - 1) p`` tokens but
    costs a prefix pass and its own ``passes`` batch passes (decoding steps): it is
    kept only when the tokens saved outweigh ``overhead`` tokens per extra pass.

    Args:
        seqs: Token sequences.
        limits: Per row, the longest prefix that may be cached.
        min_prefix: Shortest shared prefix worth caching.
        overhead: Fixed cost of one more forward pass, in tokens.
        passes: Forward passes per batch (decoding steps).

    Returns:
        ``(prefix_length, row indices)`` pairs; prefix_length 0 means plain batching.

    Example:
        >>> seqs = [[1] * 300 + [2], [1] * 300 + [3], [4, 5]]
        >>> plan_prefix_groups(seqs, [300, 300, 1], min_prefix=8, overhead=100)
        [(300, [0, 1]), (0, [2])]
    """
    groups = prefix_groups(seqs, limits, min_prefix)
    keep = [
        (p, rows) for p, rows in groups if p > 0 and (len(rows) - 1) * p > overhead * (1 + passes)
    ]
    kept = {i for _, rows in keep for i in rows}
    plain = [i for i in range(len(seqs)) if i not in kept]
    return keep + ([(0, plain)] if plain else [])


def padded_batches(lengths: Sequence[int], *, batch_size: int, overhead: int) -> list[list[int]]:
    """Split rows into padded batches that minimize the tokens computed.

    Rows are sorted by length and cut into contiguous batches (at most ``batch_size``
    rows) by dynamic programming over ``overhead + rows x longest``: one long row no
    longer pads every other row to its length, and a batch is only split when the
    padding saved outweighs the fixed cost of another forward pass.

    Args:
        lengths: Tokens each row computes.
        batch_size: Most rows per batch.
        overhead: Fixed cost of one more forward pass, in tokens.

    Returns:
        Row indices per batch, shortest rows first.

    Example:
        >>> padded_batches([5, 400, 6, 4], batch_size=8, overhead=128)
        [[3, 0, 2], [1]]
    """
    ordered = sorted(range(len(lengths)), key=lambda i: lengths[i])
    lens = [lengths[i] for i in ordered]
    n = len(ordered)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - batch_size), end):
            cost = best[start] + overhead + (end - start) * lens[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches: list[list[int]] = []
    end = n
    while end > 0:
        batches.append(ordered[cut[end] : end])
        end = cut[end]
    return batches[::-1]
