"""notifyd's benchmark suite (issue 9): `python -m bench`; see bench/__main__.py."""
