"""``python -m cloche``: the same as the `cloche` command (an image without scripts uses it)."""

from cloche.cli.launch import main

main()
