"""Edge bundles: `cloche export` packages a registered model to serve with no store or network.

The behaviour lives in ``service.export_model``; ``manifest`` is the bundle's format contract,
which the edge server (cloche/edge/) reads. This package's ``__init__`` imports nothing, so that
reading a manifest on the edge never pulls in the converters or the registry.
"""
