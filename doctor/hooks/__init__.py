"""The package-manager hook: install, uninstall and the state the hook keeps between transactions.
"""
