"""Configuration as frozen data.

``config`` holds the settings dataclasses and how their values fit together; ``environment`` is the
one reader of the OUTBOX_* variables; ``bounds`` the limits of every tunable; ``parsing`` the text
of durations, sizes and secrets; ``urls`` the database and endpoint URL checks. Nothing here
imports delivery or the store.
"""
