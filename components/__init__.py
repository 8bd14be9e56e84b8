"""KFP components of the suite (installed as ``planets_mlops.components``): thin shells over the logic."""
