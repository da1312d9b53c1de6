"""Tooling of linear_operator_fork: pin -> patch -> build -> verify -> report -> PR.

- ``recipe``: the pinned upstream release and build number (``fork.toml``)
- ``upstream``: fetch and verify the pinned sdist
- ``queue``: the patch series (checkout, export, check)
- ``build``: the PEP 517 backend that builds ``linear_operator <version>+fork.<N>``
"""
