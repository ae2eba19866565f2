"""The default configuration files, installed as the package ``orrange.defaults``.

:func:`orrange.settings.config_file` falls back to these when neither
``$ORRANGE_CONFIG_DIR`` nor ``./config`` of the working directory has the file.
"""
