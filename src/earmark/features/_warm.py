"""Imported by the extraction workers' fork server: loads the compiled kernels once, and fills the
filter caches (mel, chroma, CQT bases, windows) of the default ``classic173`` and ``stats``
presets, so that every worker forked from it starts with them instead of building them again."""

import numpy as np

from earmark.features._kernels import warm

warm()


def _fill_filter_caches() -> None:
    from earmark.features._presets import get_preset

    rng = np.random.default_rng(0)
    for name in ("classic173", "stats"):
        p = get_preset(name)
        p.transform_batch([(0.1 * rng.standard_normal(p.sample_rate // 2)).astype(np.float32)])


_fill_filter_caches()
