"""Local servers for integration, fault and benchmark runs (127.0.0.1 only).

- :mod:`tests.servers.httpd`: a raw-socket HTTP/1.1 server that misbehaves on request
  (fault vocabulary in its docstring); also ``python -m tests.servers.httpd``.
- :mod:`tests.servers.tls`: a per-session CA and server certificate (HTTPS variant).
- :mod:`tests.servers.nginx`: a private nginx (``running_nginx(root)``).
- :mod:`tests.servers.payload`: ``payload(n, seed)`` deterministic bytes.

Kept import-free on purpose: import the submodule you need.
"""
