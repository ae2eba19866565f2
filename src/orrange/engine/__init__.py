"""The engine's actors on top of :mod:`orrange.runtime` and :mod:`orrange.matching`.

One module per :class:`~orrange.runtime.Actor` subclass (``matcher``, ``risk``, ``persister``,
``feed``, ``alerter``, ``escrow``); their processes are parsed, configured and wired in
``actors/``. :mod:`orrange.engine.up` is ``orrange up``, every process of the ``Procfile``.
"""
