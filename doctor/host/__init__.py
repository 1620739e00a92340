"""The one door to the machine: the live host, a --root tree or a snapshot, and how each is
recorded.
"""
