"""Real-name subscribers (实名制): who holds the numbers, found again by a keyed hash of the
resident ID, and the 一证五号 limit (at most 5 live numbers per person per carrier)."""
