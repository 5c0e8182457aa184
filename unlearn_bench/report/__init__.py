"""Reading records into verdicts: statistics and study reports. Nothing here trains or imports torch, and
nothing below the report layer imports it."""
