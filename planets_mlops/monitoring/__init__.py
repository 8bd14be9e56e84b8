"""Watching the model in production: what it sees, against what it was trained on.

- :mod:`.features` -- scalar image features and the fixed embedding projection, computed
  the same way on training and on production images (the model-input tensors).
- :mod:`.reference` -- the reference profile, made at training time on the validation
  images and shipped in the model folder and the bento beside the guard.
- :mod:`.records` -- one prediction record per served image, batched into JSON Lines objects
  partitioned by model version and hour in the artifact store.
"""
