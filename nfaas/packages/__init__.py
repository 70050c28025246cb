"""Serverless application and function packages (EVE025 7.2.4; use cases #1, #2).

``descriptors`` (the models), ``archive`` (safe zip reading), ``manifest``
(TOSCA.meta and the manifest), ``definitions`` (descriptor YAML), ``csar``
(``read_package``), ``builder``, ``fetch`` and ``schema``; see
``docs/package-format.md``.
"""
