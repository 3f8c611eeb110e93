"""`make demo`: the numbind story on one machine (`python -m numbind.demo`)."""
