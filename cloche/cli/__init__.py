"""The ``cloche`` command line: a thin layer over the SDK, one module per command group."""
