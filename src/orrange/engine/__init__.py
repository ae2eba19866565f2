"""The engine's actors on top of :mod:`orrange.runtime` and :mod:`orrange.matching`.

One module per :class:`~orrange.runtime.Actor` subclass (``matcher``, ``risk``, ``persister``,
``feed``, ``alerter``, ``escrow``); their processes are parsed, configured and wired in
``actors/``; ``orrange up`` (every process of the ``Procfile``) is :mod:`orrange.infra.up`.
"""
