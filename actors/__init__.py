"""One module per deployable actor process (``python -m actors.<name>``)."""
