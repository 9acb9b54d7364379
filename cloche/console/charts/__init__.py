"""Charts drawn on the server as SVG: pure functions of the data, no I/O."""
