"""Loading the skops files of fitted models: only listed types, each file's content once.

skops rebuilds a file's objects after auditing every node against the trusted types, which for
a churn model of 5 bags x 300 trees costs seconds of CPU (13 s on a busy 2-core machine, about
a third of a small shop's training, which loads each logged model back three times: its output
example, MLflow's serving-input check and our own check). A file whose bytes were already
loaded in this process is answered from memory: same bytes, same objects. Callers must treat
what they get as read-only (fitted estimators are, for predicting)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from threading import Lock
from typing import Any

CACHED_FILES = 4
"""Loaded files kept in memory (the most recently used)."""

_cache: OrderedDict[tuple[str, tuple[str, ...]], Any] = OrderedDict()
_lock = Lock()


def load_trusted(path: Path, trusted: Sequence[str]) -> Any:
    """The object saved at `path`, refused with ValueError (naming the types) when the file
    holds any type outside `trusted`."""
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    data = Path(path).read_bytes()
    key = (hashlib.sha256(data).hexdigest(), tuple(sorted(trusted)))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        # skops audits every node against `trusted` before building anything.
        loaded = skops.io.loads(data, trusted=list(trusted))
    except UntrustedTypesFoundException as error:
        raise ValueError(f"{path} holds types that are not trusted: {error}") from error
    with _lock:
        _cache[key] = loaded
        while len(_cache) > CACHED_FILES:
            _cache.popitem(last=False)
    return loaded
