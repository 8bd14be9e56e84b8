"""The application layer: CLI, KFP client, local runner, quickstart and demos.

Imports point one way: ``app -> pipelines -> components -> logic``. Modules here may import
:mod:`planets_mlops.pipelines`, :mod:`planets_mlops.components` and the logic modules;
nothing below imports this package (``tests/pure/test_layers.py`` checks it).
"""
