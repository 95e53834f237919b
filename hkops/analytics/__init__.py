"""Statistics over the usage store and, later, sales."""
