"""The web console: server-rendered pages (Jinja2 + htmx) over the same services as the API.

``app.mount_console`` is the one call that puts it into a server; each page module in
``pages/`` calls one service per route, with the API's roles and errors.
"""
