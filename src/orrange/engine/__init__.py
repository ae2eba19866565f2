"""The engine's actors and wiring on top of :mod:`orrange.runtime` and :mod:`orrange.matching`.

* :mod:`orrange.engine.matcher`: the matcher actor (books of a symbol shard).
* :mod:`orrange.engine.up`: ``orrange up``, every process of the ``Procfile``.
"""
