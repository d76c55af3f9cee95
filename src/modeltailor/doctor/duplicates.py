"""Exact duplicates (same content digest) and near duplicates (embedding cosine above a threshold).

Near duplicates are found by blocked matrix products over L2-normalised embeddings: the
similarity matrix is never held whole, only one `block x block` tile at a time (2048 x 2048
float32 = 16 MB), so memory is O(N d + block^2 + pairs found) and time O(N^2 d / 2) multiply-adds
(N = 100,000 at d = 1280: about 6.4e12, minutes on a laptop CPU). Pairs above the threshold are
merged with a union-find into groups; a group is what a user reviews, one member is kept.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

#: Rows per side of one similarity tile.
BLOCK = 2048


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def groups(self) -> list[list[int]]:
        """Components of more than one member, each sorted, ordered by their first member."""
        members: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            members[self.find(i)].append(i)
        return sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda m: m[0])


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); a zero row stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def exact_groups(digests: list[str]) -> list[list[int]]:
    """Indices of items sharing a content digest, groups of two or more."""
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        by_digest[d].append(i)
    return sorted((m for m in by_digest.values() if len(m) > 1), key=lambda m: m[0])


def similar_pairs(
    x: np.ndarray, threshold: float, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, cosine) of every pair i < j of unit rows whose cosine is >= threshold.

    Tile by tile over the upper triangle: peak memory is one `block x block` tile plus the
    pairs found, whatever the number of rows.
    """
    n = x.shape[0]
    found_i, found_j, found_s = [], [], []
    for a in range(0, n, block):
        xa = x[a : a + block]
        for b in range(a, n, block):
            sims = xa @ x[b : b + block].T
            if a == b:
                sims = np.triu(sims, k=1) + np.tril(np.full_like(sims, -2.0))
            ii, jj = np.nonzero(sims >= threshold)
            if len(ii):
                found_i.append(ii + a)
                found_j.append(jj + b)
                found_s.append(sims[ii, jj])
    if not found_i:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)


def nearest_other(x: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Each unit row's highest cosine with any other row (blocked, as `similar_pairs`)."""
    n = x.shape[0]
    best = np.full(n, -1.0, dtype=np.float32)
    for a in range(0, n, block):
        xa = x[a : a + block]
        for b in range(0, n, block):
            sims = xa @ x[b : b + block].T
            if a == b:
                np.fill_diagonal(sims, -2.0)
            best[a : a + len(xa)] = np.maximum(best[a : a + len(xa)], sims.max(axis=1))
    return best


def near_groups(
    signals: list[tuple[str, np.ndarray, float]], digests: list[str]
) -> tuple[list[list[int]], dict[tuple[int, int], dict[str, float]]]:
    """Groups of items linked by any signal (name, unit rows, cosine threshold), where at
    least two members differ in content (groups of identical files are `exact_groups`); and
    for each pair found, its cosine under each signal that linked it (for the report)."""
    uf = UnionFind(len(digests))
    pairs: dict[tuple[int, int], dict[str, float]] = {}
    for name, x, threshold in signals:
        ii, jj, ss = similar_pairs(x, threshold)
        for i, j, s in zip(ii.tolist(), jj.tolist(), ss.tolist(), strict=True):
            if digests[i] != digests[j]:
                uf.union(i, j)
                pairs.setdefault((i, j), {})[name] = round(float(s), 4)
    linked = {i for pair in pairs for i in pair}
    for members in exact_groups(digests):  # identical copies of a linked item join it
        if linked.intersection(members):
            for other in members[1:]:
                uf.union(members[0], other)
    groups = [g for g in uf.groups() if len({digests[i] for i in g}) > 1]
    return groups, pairs
