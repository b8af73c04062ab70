"""The delivery daemon and what only it uses.

``worker`` runs the claim loop; ``dispatch`` sends one message and settles it through ``writer``;
``policy`` (pure) and ``answers`` classify what the endpoint said; ``circuit`` and ``pacing`` pause
and pace the whole sender; ``rhythm`` times the polls; ``sender`` is the aiohttp edge to Ravelin;
``health`` serves /healthz, /readyz and /metrics; ``liveness`` and ``upkeep`` keep the process
honest.
It sees the database only through ``outbox_worker.ports``; never the CLI, the console or the demo.
"""
