"""Model versions with lineage, the promotion lock, alias moves and their records.

Promotion is an alias: ``production`` names the version that serves, ``candidate`` the
latest challenger. Nothing copies a URI. MLflow has no compare-and-set on aliases, so a
move happens inside a lock:

1. **Lock.** A registered model named ``<model>.promotion-lock`` created with
   ``create_registered_model``: creation is atomic in the backend database, so of two
   promoters exactly one creates it; the other gets ``RESOURCE_ALREADY_EXISTS`` and waits
   (``lock_wait_s``), then gives up with :class:`PromotionConflictError`. The lock's tags
   name its holder and its expiry; a lock past its expiry (its holder died) is taken over
   through a second atomic creation, ``<lock>.takeover.<holder digest>``, so two waiters
   never both take over the same dead lock.
   **Fencing.** Each holding has a token: the lock model's creation time on the server
   (a takeover creates a new lock, so a new token), written with the holder to the
   registered model's tag ``planets.lock.fence`` as soon as the lock is held. A holder
   that stalled past the lock's lifetime (or whose clock made a waiter think so) finds
   another token there and is refused before it moves the alias, and checks again after
   recording, so two promotions never both report success.
2. **Compare-and-set.** Inside the lock the alias must still name the version the
   promoter expected (the one its gate compared against). If it moved, the promotion is
   refused with a message saying what it now names.
3. **Move and record.** The alias moves and a move record (who or which run, when, why,
   the gate's numbers, from and to, the fencing token) becomes the registered model's tag
   ``planets.move.<sequence>``, the sequence one above the highest record number present
   (readable or not, so an unreadable record is never overwritten); if writing the record
   fails, the alias is put back.
4. **Release** the lock (only if this holder still holds it).

MLflow has no conditional write, so the fence narrows the race to the few milliseconds
between the fence check and the alias write; it does not close it (docs/threat-model.md).

The parts live in :mod:`.versions` (versions, lineage, downloads), :mod:`.lock` (the lock
and its fencing token) and :mod:`.aliases` (compare-and-set moves, their records, the
production opponent); this module is their one front door
(``from planets_mlops.registry import registry as reg``).
"""

from __future__ import annotations

from planets_mlops.registry.aliases import (
    MOVE_TAG,
    Move,
    Opponent,
    move_alias,
    moves,
    next_sequence,
    previous_version,
    production_opponent,
)
from planets_mlops.registry.lock import (
    LOCK_SUFFIX,
    TAG_EXPIRES,
    TAG_FENCE,
    TAG_HOLDER,
    TAKEOVER_INFIX,
    LockSettings,
    check_fence,
    is_lock_name,
    promotion_lock,
)
from planets_mlops.registry.versions import (
    CANDIDATE,
    MAX_MODEL_FILE_BYTES,
    PRODUCTION,
    actor,
    alias_version,
    download_model,
    ensure_model,
    list_versions,
    now_iso,
    register_version,
    require_model,
    version_info,
)

__all__ = [
    "CANDIDATE",
    "LOCK_SUFFIX",
    "LockSettings",
    "MAX_MODEL_FILE_BYTES",
    "MOVE_TAG",
    "Move",
    "Opponent",
    "PRODUCTION",
    "TAG_EXPIRES",
    "TAG_FENCE",
    "TAG_HOLDER",
    "TAKEOVER_INFIX",
    "actor",
    "alias_version",
    "check_fence",
    "download_model",
    "ensure_model",
    "is_lock_name",
    "list_versions",
    "move_alias",
    "moves",
    "next_sequence",
    "now_iso",
    "previous_version",
    "production_opponent",
    "promotion_lock",
    "register_version",
    "require_model",
    "version_info",
]
