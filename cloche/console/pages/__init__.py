"""One module per console resource, each exporting its ``ROUTES``."""
