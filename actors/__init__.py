"""The engine's processes, one module per process line of the ``Procfile``.

``orrange actor NAME [ARGS]`` (or ``python -m actors.NAME``) runs ``actors.NAME.main(ARGS)``;
each module is the only place where its process is parsed, configured and wired, on the
shared command line of :mod:`actors._args`.
"""
