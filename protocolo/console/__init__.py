"""The dispute console: server-rendered pages (Jinja2, plain forms) on the API's app.

Every page calls the API's own route functions (``protocolo.api.routes``) with the
caller's :class:`~protocolo.api.identities.Principal`: the same read model, the same
authorization rule (:func:`protocolo.api.auth.authorize`), the same access audit and
two-person approval; the console only turns answers into HTML and errors into messages.
"""
