"""The ``scenerender`` command line (a door: it parses, calls the package, maps the outcome).

Empty on purpose: ``scenerender.cli.entry`` installs the stop handlers before anything
heavier is imported.
"""
