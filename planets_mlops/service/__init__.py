"""The BentoML service that serves the planets classifier, and its pure request logic.

``service.py`` is the module a bento runs (``planets_mlops.service.service:PlanetClassifier``);
``inference.py`` and ``uploads.py`` hold the logic it calls, importable and testable without
BentoML. Nothing heavy is imported here: ``bentoml serve`` imports this package in its
supervisor process too.
"""
