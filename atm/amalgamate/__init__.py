"""Amalgamation helpers beside the `amalgamate` objective (atm/objectives/amalgamate.py): the cached
Monte-Carlo scores (`python -m atm.amalgamate.score`)."""
